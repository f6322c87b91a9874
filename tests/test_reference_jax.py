"""refplastic's reference numbers against JAX: docs/examples/verify_jax.py on the whole built-in suite,
then ``verify`` must pass (jax.numpy with float64 enabled, JAX's own transforms for every derivative)."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from refplastic.reference import format_table, verify_files, write_suite

pytest.importorskip("jax")
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "verify_jax.py"


def run_example(*args):
    """The example in a subprocess; XLA without LLVM's costly optimisations compiles the suite's
    functions two to three times faster (the same numbers: verify's table does not change)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}
    return subprocess.run([sys.executable, str(EXAMPLE), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_jax_example_passes_verify_on_the_suite(tmp_path):
    reference, theirs = tmp_path / "reference.h5", tmp_path / "theirs.h5"
    write_suite(reference)
    run = run_example(reference, theirs)
    assert run.returncode == 0, run.stderr
    rows, ok = verify_files(theirs, reference)
    assert ok, format_table(rows)
    # the example computes every quantity but the statistics
    assert {row.quantity.split("/")[0] for row in rows if row.status != "ok"} == {"stats"}, format_table(rows)
    # every float64 derivative to about 1e-15 (Adam's step is not a derivative: see docs/reference-format.md)
    assert max(row.error for row in rows if row.status == "ok" and not row.case.endswith("float32")
               and not row.quantity.startswith("optim")) < 1e-13
    # and the float32 case in float32
    with h5py.File(theirs, "r") as f:
        float32_case = f["cases/mlp_leakyrelu_float32"]
        assert {float32_case[k].dtype for k in ("outputs", "hessian", "ggn", "optim/adam/flat_params_after")} == {
            np.dtype(np.float32)}


def test_jax_example_on_chosen_cases(tmp_path):
    reference, theirs = tmp_path / "reference.h5", tmp_path / "theirs.h5"
    write_suite(reference)
    run = run_example(reference, theirs, "--cases", "mlp_tanh_mse")
    assert run.returncode == 0, run.stderr
    rows, ok = verify_files(theirs, reference)
    assert not ok and {r.case for r in rows if r.status == "missing case"} == {
        name for name in {r.case for r in rows} if name != "mlp_tanh_mse"}
