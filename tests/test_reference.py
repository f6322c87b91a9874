"""Reference files: the built-in suite, compute on a user's cases, verify, and one-line errors on bad files."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from refplastic.reference import compute_file, format_table, read_datasets, suite_cases, verify_files, write_suite
from refplastic.reference import compute as compute_module
from refplastic.reference.format import CASE_ATTRS
from refplastic.reference.verify import column_of, compare, relative_error

ROOT = Path(__file__).resolve().parents[1]
INPUT_FIELDS = ("inputs", "targets", "params", "buffers")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "reference.h5"
    write_suite(path)
    return path


def strip_to_inputs(src, dst, keep=INPUT_FIELDS):
    """A compute IN file: each case's attributes and only the ``keep`` fields of ``src``."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for name, case in f["cases"].items():
            out = g.create_group(f"cases/{name}")
            out.attrs.update({k: case.attrs[k] for k in CASE_ATTRS})
            for key in keep:
                if key in case:
                    f.copy(case[key], out, key)


def test_suite_is_deterministic_small_and_covers_the_issue(suite, tmp_path):
    again = tmp_path / "again.h5"
    write_suite(again)
    a, b = read_datasets(suite), read_datasets(again)
    assert a.keys() == b.keys()
    for case in a:
        assert a[case].keys() == b[case].keys()
        for key in a[case]:
            assert a[case][key].dtype == b[case][key].dtype and np.array_equal(a[case][key], b[case][key]), (case, key)
    assert os.path.getsize(suite) < 8e6

    cases = suite_cases()
    layer_types = {d["type"] for c in cases for d in c.architecture}
    assert {"Tanh", "ReLU", "GELU", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "Conv2d", "MaxPool2d"} <= layer_types
    assert any(d.get("stride") == [2, 2] and d.get("padding") == [1, 1] for c in cases for d in c.architecture)
    assert {c.loss for c in cases} == {"mse", "cross_entropy", "huber"}
    assert {c.dtype for c in cases} == {"float64", "float32"} and {c.mode for c in cases} == {"train", "eval"}
    big = [name for name, arrays in a.items() if arrays["flat_params"].size > 5000]
    assert big and all("hessian" not in a[name] and "jacobian" in a[name] for name in big)
    assert all("hessian" in arrays and "ggn_eigenvalues" in arrays for name, arrays in a.items() if name not in big)
    with h5py.File(suite, "r") as f:
        assert f.attrs["format"] == "refplastic-reference" and f.attrs["version"] == 1
        assert "refplastic_version" in f.attrs and "command" in f.attrs


def test_quantities_are_consistent_with_each_other(suite):
    with h5py.File(suite, "r") as f:
        for name, case in f["cases"].items():
            d = {k: np.asarray(case[k][()], np.float64) for k in ("flat_params", "flat_grad", "per_example_grads",
                                                                   "hvp/vectors", "hvp/products",
                                                                   "optim/sgd/flat_params_after")}
            tol = 1e-12 if case.attrs["dtype"] == "float64" else 1e-5
            theta, g = d["flat_params"], d["flat_grad"]
            assert relative_error(d["per_example_grads"].mean(0), g) < tol, name
            pieces = np.concatenate([case["grads"][n][()].ravel() for n in _torch_order(case)])
            assert np.array_equal(pieces, case["flat_grad"][()]), name
            params = np.concatenate([case["params"][n][()].ravel() for n in _torch_order(case)])
            assert np.array_equal(params, case["flat_params"][()]), name
            lr = case["optim/sgd"].attrs["lr"]
            assert relative_error(d["optim/sgd/flat_params_after"], theta - lr * g) < tol, name
            assert case["jacobian"].shape == (case["outputs"].size, theta.size)
            if "hessian" in case:
                H = case["hessian"][()].astype(np.float64)
                assert np.array_equal(H, H.T)
                assert relative_error(d["hvp/vectors"] @ H, d["hvp/products"]) < 10 * tol, name
                assert relative_error(np.linalg.eigvalsh(H), case["hessian_eigenvalues"][()]) < 10 * tol, name
                assert np.all(np.diff(case["ggn_eigenvalues"][()]) >= 0)


def _torch_order(case):
    """Parameter names in torch's order: by layer index, weight before bias."""
    return sorted(case["params"], key=lambda n: (int(n.split(".")[0]), n.split(".")[1] != "weight"))


def test_compute_on_inputs_only_reproduces_the_suite(suite, tmp_path):
    stripped, out = tmp_path / "in.h5", tmp_path / "out.h5"
    strip_to_inputs(suite, stripped)
    compute_file(stripped, out)
    assert read_datasets(out).keys() == read_datasets(suite).keys()
    rows, ok = verify_files(out, suite, rtol=0.0)
    assert ok and all(row.status == "ok" for row in rows)


def test_compute_uses_given_hvp_vectors(suite, tmp_path):
    stripped, out = tmp_path / "in.h5", tmp_path / "out.h5"
    strip_to_inputs(suite, stripped)
    with h5py.File(stripped, "a") as f:
        case = f["cases/mlp_tanh_mse"]
        P = sum(case["params"][n].size for n in case["params"])
        V = np.random.default_rng(5).standard_normal((2, P))
        case["hvp/vectors"] = V
    compute_file(stripped, out)
    with h5py.File(out, "r") as f:
        case = f["cases/mlp_tanh_mse"]
        assert np.array_equal(case["hvp/vectors"][()], V)
        assert relative_error(V @ case["hessian"][()], case["hvp/products"][()]) < 1e-12


def test_verify_built_in_suite_by_default(suite):
    rows, ok = verify_files(suite)
    assert ok and {row.case for row in rows} == {c.name for c in suite_cases()}


def test_committed_reference_matches_the_suite():
    rows, ok = verify_files(ROOT / "results" / "reference.h5")
    assert ok and not [row for row in rows if row.status != "ok"], format_table(rows)


def test_verify_catches_a_perturbed_quantity_and_a_missing_case_and_reports_missing_quantities(suite):
    ref = read_datasets(suite)
    theirs = {case: dict(arrays) for case, arrays in ref.items()}
    theirs["mlp_layernorm"]["hessian"] = theirs["mlp_layernorm"]["hessian"] * (1 + 1e-6)
    rows = compare(theirs, ref)
    bad = [r for r in rows if r.failed]
    assert [(r.case, r.quantity, r.status) for r in bad] == [("mlp_layernorm", "hessian", "mismatch")]
    assert 0.9e-6 < bad[0].error < 1.1e-6
    table = format_table(rows)
    assert "MISMATCH mlp_layernorm: hessian: error 1.000e-06 > rtol 1e-08" in table and table.endswith("1 problem(s)")

    del theirs["cnn_stride_padding"]
    del theirs["mlp_tanh_mse"]["ggn"]
    for key in [k for k in theirs["mlp_gelu_huber"] if k.startswith("optim/")]:
        del theirs["mlp_gelu_huber"][key]
    rows = compare(theirs, ref, rtol=1e-5)
    statuses = {(r.case, r.quantity): r.status for r in rows if r.status != "ok"}
    assert statuses == {("cnn_stride_padding", ""): "missing case", ("mlp_tanh_mse", "ggn"): "missing",
                        **{("mlp_gelu_huber", f"optim/{o}/flat_params_after"): "missing"
                           for o in ("sgd", "adam", "rmsprop")}}
    assert any(r.failed for r in rows)
    table = format_table(rows)
    assert "missing from THEIRS (not a failure): ggn in mlp_tanh_mse" in table
    assert "cnn_stride_padding" in table and "FAILED" in table

    del theirs["mlp_layernorm"]
    theirs["mine"] = {"loss": np.array(1.0)}
    for case in ref:
        theirs.setdefault(case, dict(ref[case]))
    rows = compare(theirs, ref)
    assert not any(r.failed for r in rows)  # missing quantities and extra cases do not fail
    assert ("mine", "extra case") in {(r.case, r.status) for r in rows}
    assert format_table(rows).splitlines()[-1] == f"OK: {len(ref)} case(s) match"


def test_verify_shapes_nan_integers_and_zero_scales(suite):
    ref = read_datasets(suite)
    case = "mlp_relu_cross_entropy"
    theirs = {case: dict(ref[case])}
    theirs[case]["jacobian"] = theirs[case]["jacobian"].T
    theirs[case]["loss"] = np.array(np.nan)
    theirs[case]["targets"] = (theirs[case]["targets"] + 1) % 4
    theirs[case]["flat_grad"] = theirs[case]["flat_grad"].astype(np.complex128)  # equal values, wrong kind
    theirs[case]["inputs"] = theirs[case]["inputs"].astype(str)
    rows = {r.quantity: r for r in compare(theirs, {case: ref[case]})}
    assert rows["flat_grad"].status == "mismatch" and "complex" in rows["flat_grad"].detail
    assert rows["inputs"].status == "mismatch" and "not numbers" in rows["inputs"].detail
    assert rows["jacobian"].status == "mismatch" and "shape" in rows["jacobian"].detail
    assert rows["loss"].status == "mismatch"
    assert rows["targets"].status == "mismatch" and rows["targets"].rtol == 0.0
    # a parameter's gradient is compared relative to the whole gradient: noise on a zero bias is fine
    g = np.array([1.0, 2.0, 0.0, 0.0])
    reference = {"c": {"flat_grad": g, "grads/1.bias": g[2:]}}
    rows = compare({"c": {"flat_grad": g, "grads/1.bias": np.array([1e-17, -1e-17])}}, reference)
    assert all(r.status == "ok" for r in rows)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0 and relative_error(np.ones(3), np.zeros(3)) > 1e300


def test_statistics_are_compared_one_by_one(suite):
    ref = read_datasets(suite)
    case = "mlp_relu_cross_entropy"
    names = [n.decode() for n in ref[case]["stats/names"]]
    theirs = dict(ref[case])
    theirs["stats/values"] = ref[case]["stats/values"].copy()
    theirs["stats/values"][names.index("loss")] += 1e-6
    theirs["stats/names"] = theirs["stats/names"][1:]  # all but the first
    theirs["stats/values"] = theirs["stats/values"][1:]
    rows = {r.quantity: r for r in compare({case: theirs}, {case: ref[case]})}
    assert rows["stats/loss"].status == "mismatch"
    assert rows[f"stats/{names[0]}"].status == "missing"
    assert all(rows[f"stats/{n}"].status == "ok" for n in names[1:] if n != "loss")
    assert "loss" in names and "gradient_norm" in names


def test_a_case_with_nothing_in_common_fails(suite):
    ref = read_datasets(suite)
    rows = compare({name: {} for name in ref}, ref)
    assert {r.status for r in rows if r.failed} == {"nothing compared"}


def test_a_case_with_only_the_given_data_in_common_fails(suite):
    """Inputs, targets, parameters and buffers copied from the input file are no check of anything."""
    ref = read_datasets(suite)
    case = "mlp_batchnorm_eval"
    given = {k: v for k, v in ref[case].items() if column_of(k) == "given"}
    assert {"inputs", "targets", "params/0.weight", "buffers/1.running_var", "flat_params"} <= set(given)
    rows = compare({case: given}, {case: ref[case]})
    assert [(r.case, r.status) for r in rows if r.failed] == [(case, "nothing compared")]
    rows = compare({case: {**given, "loss": ref[case]["loss"]}}, {case: ref[case]})
    assert not any(r.failed for r in rows)


# ---- bad files --------------------------------------------------------------------------------------------
def _set(key, value):
    def edit(case):
        if key in case:
            del case[key]
        case[key] = value
    return edit


def _del(key):
    def edit(case):
        del case[key]
    return edit


def _attr(key, value):
    def edit(case):
        if value is None:
            del case.attrs[key]
        else:
            case.attrs[key] = value
    return edit


def _scale(key, factor):
    def edit(case):
        a = case[key][()]
        del case[key]
        case[key] = a * factor
    return edit


def _nan(key):
    def edit(case):
        a = case[key][()].astype(np.float64)
        a.flat[0] = np.nan
        del case[key]
        case[key] = a
    return edit


def _arch(edit_list):
    def edit(case):
        arch = json.loads(case.attrs["architecture"])
        edit_list(arch)
        case.attrs["architecture"] = json.dumps(arch)
    return edit


BAD_CASES = [
    ("mlp_tanh_mse", _attr("loss", None), "loss: missing attribute"),
    ("mlp_tanh_mse", _attr("loss", "l1"), "loss: must be one of"),
    ("mlp_tanh_mse", _attr("dtype", "float16"), "dtype: must be one of"),
    ("mlp_tanh_mse", _attr("mode", "training"), "mode: must be one of"),
    ("mlp_tanh_mse", _attr("architecture", "[{"), "architecture: not valid JSON"),
    ("mlp_tanh_mse", _arch(lambda a: a.__setitem__(1, {"type": "Swish"})), "architecture: unknown layer type 'Swish'"),
    ("mlp_tanh_mse", _arch(lambda a: a[0].__setitem__("in_features", 6)),
     "params/0.weight: expected shape (10, 6) from the architecture, got (10, 5)"),
    ("mlp_tanh_mse", _del("params"), "params: missing group"),
    ("mlp_tanh_mse", _del("params/2.bias"), "params/2.bias: missing"),
    ("mlp_tanh_mse", _set("params/7.weight", np.zeros(3)), "params/7.weight: not in this architecture"),
    ("mlp_tanh_mse", _set("params/0.weight", np.zeros((5, 10))),
     "params/0.weight: expected shape (10, 5) from the architecture, got (5, 10)"),
    ("mlp_tanh_mse", _set("params/0.weight", np.zeros((10, 5), np.int64)), "params/0.weight: expected floating"),
    ("mlp_tanh_mse", _nan("params/0.bias"), "params/0.bias: contains NaN or infinity"),
    ("mlp_tanh_mse", _scale("inputs", np.inf), "inputs: contains NaN or infinity"),
    ("mlp_tanh_mse", _set("inputs", np.zeros((8, 7))), "inputs: shape (8, 7) does not fit the architecture"),
    ("mlp_tanh_mse", _del("inputs"), "inputs: missing dataset"),
    ("mlp_tanh_mse", _set("inputs", np.array(["a", "b"], dtype="S1")), "inputs: expected numbers"),
    ("mlp_tanh_mse", _nan("targets"), "targets: contains NaN or infinity"),
    ("mlp_tanh_mse", _set("targets", np.zeros((8, 2))), "targets: expected floats of the outputs' shape (8, 3)"),
    ("mlp_relu_cross_entropy", _set("targets", np.full(10, 4, np.int64)), "targets: labels must lie in [0, 4)"),
    ("mlp_relu_cross_entropy", _set("targets", np.zeros(10)), "targets: expected int64 labels or floats"),
    ("mlp_relu_cross_entropy", _set("targets", np.array([0, 1, 2, 3, 0, 1, 5, 3, 0, 1])),
     "targets: labels must lie in [0, 4): row 6 is 5"),
    ("mlp_sigmoid_soft_targets", _scale("targets", 0.5), "targets: row 0 sums to 0.5, not 1"),
    ("mlp_sigmoid_soft_targets", _scale("targets", -1.0), "targets: row 0 has a negative entry"),
    ("mlp_batchnorm_eval", _del("buffers"), "buffers/1.running_mean: missing"),
    ("mlp_batchnorm_eval", _set("buffers/1.running_var", np.ones(7)), "buffers/1.running_var: expected shape (8,)"),
    ("mlp_batchnorm_eval", _set("buffers/1.num_batches_tracked", np.array(3.0)),
     "buffers/1.num_batches_tracked: expected integer"),
    ("mlp_tanh_mse", _set("hvp/vectors", np.zeros((2, 5))), "hvp/vectors: expected a float array (K, 203)"),
    ("mlp_tanh_mse", _set("hvp/vectors", np.full((2, 203), np.nan)), "hvp/vectors: contains NaN or infinity"),
    # finite in the file's float64, infinite once cast to the case's float32
    ("mlp_leakyrelu_float32", _scale("inputs", np.float64(1e39)), "inputs: values beyond the range of float32"),
    ("mlp_leakyrelu_float32", _scale("params/0.weight", np.float64(1e39)),
     "params/0.weight: values beyond the range of float32"),
    ("mlp_leakyrelu_float32", _set("hvp/vectors", np.full((2, 58), 1e39)), "hvp/vectors: values beyond the range"),
]


@pytest.mark.parametrize("case,edit,message", BAD_CASES, ids=[m.split(":")[0] + "-" + str(i)
                                                                for i, (_, _, m) in enumerate(BAD_CASES)])
def test_bad_case_gives_one_line_naming_case_and_field(suite, tmp_path, case, edit, message):
    bad, out = tmp_path / "in.h5", tmp_path / "out.h5"
    strip_to_inputs(suite, bad)
    with h5py.File(bad, "a") as f:
        edit(f["cases"][case])
    with pytest.raises(ValueError) as info:
        compute_file(bad, out)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{bad}: case {case!r}: ") and message in text, text
    assert sorted(os.listdir(tmp_path)) == ["in.h5"]


@pytest.mark.parametrize("edit,error,message", [
    (lambda f: f.attrs.__setitem__("format", "refplastic-checkpoint"), ValueError, "attribute format is"),
    (lambda f: f.attrs.__setitem__("version", 2), ValueError, "unsupported version 2"),
    (lambda f: f.__delitem__("cases"), ValueError, "missing group /cases"),
])
def test_bad_file_gives_one_line(suite, tmp_path, edit, error, message):
    bad = tmp_path / "in.h5"
    strip_to_inputs(suite, bad)
    with h5py.File(bad, "a") as f:
        edit(f)
    for call in (lambda: compute_file(bad, tmp_path / "out.h5"), lambda: verify_files(bad, suite)):
        with pytest.raises(error, match=message):
            call()
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(OSError, match="not a readable HDF5 file"):
        compute_file(tmp_path / "text.h5", tmp_path / "out.h5")
    with pytest.raises(OSError, match="no such file"):
        verify_files(tmp_path / "none.h5", suite)
    assert not (tmp_path / "out.h5").exists()


def test_failure_while_computing_leaves_no_file_and_keeps_an_old_one(suite, tmp_path, monkeypatch):
    stripped, out = tmp_path / "in.h5", tmp_path / "out.h5"
    strip_to_inputs(suite, stripped)
    out.write_bytes(b"old")
    real = compute_module.compute_case
    calls = []

    def failing(case):
        calls.append(case.name)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(case)

    monkeypatch.setattr(compute_module, "compute_case", failing)
    with pytest.raises(RuntimeError):
        compute_file(stripped, out)
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["in.h5", "out.h5"]
