"""refplastic's reference numbers against torch: docs/examples/verify_torch.py on the whole built-in suite,
then ``verify`` must pass (torch reverse mode, double backward for second derivatives)."""

import subprocess
import sys
from pathlib import Path

import pytest

from refplastic.reference import format_table, verify_files, write_suite

pytest.importorskip("torch")
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "verify_torch.py"


def test_torch_example_passes_verify_on_the_suite(tmp_path):
    reference, theirs = tmp_path / "reference.h5", tmp_path / "theirs.h5"
    write_suite(reference)
    run = subprocess.run([sys.executable, str(EXAMPLE), str(reference), str(theirs)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    rows, ok = verify_files(theirs, reference)
    assert ok, format_table(rows)
    # the example computes every quantity but the statistics
    assert {row.quantity.split("/")[0] for row in rows if row.status != "ok"} == {"stats"}, format_table(rows)
    # its table shows torch.func.hessian going wrong through LayerNorm, and jacfwd(grad) not
    line = next(line for line in run.stdout.splitlines() if line.startswith("mlp_layernorm"))
    hessian, _, jacfwd_grad, _ = map(float, line.split()[1:])
    assert hessian > 1e-3 and jacfwd_grad < 1e-12


def test_torch_example_on_chosen_cases(tmp_path):
    reference, theirs = tmp_path / "reference.h5", tmp_path / "theirs.h5"
    write_suite(reference)
    run = subprocess.run([sys.executable, str(EXAMPLE), str(reference), str(theirs), "--cases", "mlp_tanh_mse"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows, ok = verify_files(theirs, reference)
    assert not ok and {r.case for r in rows if r.status == "missing case"} == {
        name for name in {r.case for r in rows} if name != "mlp_tanh_mse"}
