"""The curvature report: its numbers, its HDF5 file, its plot."""

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from refplastic.curvature import ggn, hessian, per_example_gradients
from refplastic.curvature.report import (QUANTITIES, QUANTITY_FORMULAS, curvature_report, describe_quantities,
                                        plot_spectrum, read_report_h5, write_report_h5)
from refplastic.nn import BatchNorm1d, Linear, Network, ReLU, Tanh, make_loss
from refplastic.overflow import NotFinite


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    net = Network([Linear(4, 8), BatchNorm1d(8), Tanh(), Linear(8, 3)], rng)
    x, t = rng.normal(size=(16, 4)), rng.integers(0, 3, size=16)
    loss = make_loss("cross_entropy")
    calls = []
    before = net.state_dict()
    report = curvature_report(net, loss, x, t, QUANTITIES, seed=7, progress=lambda *a: calls.append(a),
                              top_k=3, trace_probes=20, slq_probes=3, slq_steps=20, grid_points=50)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    return net, loss, x, t, report, calls


def test_report_numbers(setup):
    net, loss, x, t, report, calls = setup
    lam = np.linalg.eigvalsh(hessian(net, loss, x, t))
    np.testing.assert_allclose(report["hessian"]["eigenvalues"], lam, atol=1e-12)
    np.testing.assert_allclose(report["ggn"]["eigenvalues"], np.linalg.eigvalsh(ggn(net, loss, x, t)), atol=1e-12)
    scalars = report["hessian"]["scalars"]["attrs"]
    assert scalars["largest_eigenvalue"] == lam[-1]
    assert scalars["trace"] == pytest.approx(lam.sum())
    lanczos = report["hessian"]["lanczos"]
    assert lanczos["attrs"]["num_steps"] == 46 and lanczos["top"].shape == (3,)
    np.testing.assert_allclose(lanczos["top"], lam[-3:], atol=1e-8 * abs(lam).max())
    hutchinson = report["hessian"]["hutchinson"]["attrs"]
    assert abs(hutchinson["trace"] - lam.sum()) < 5 * hutchinson["standard_error"]
    density = report["ggn"]["density"]
    assert density["grid"].shape == density["density"].shape == (50,)
    assert density["nodes"].shape == density["weights"].shape == (3, 20)
    assert 0 <= report["hessian"]["density"]["attrs"]["negative_mass_estimate"] <= 1
    assert report["ggn"]["density"]["attrs"]["negative_mass_estimate"] < 1e-8  # G is positive semi-definite
    G = per_example_gradients(net, loss, x, t)
    np.testing.assert_allclose(report["gradients"]["norms"], np.linalg.norm(G, axis=1), rtol=1e-12)
    assert report["gradients"]["attrs"]["fisher_trace"] == pytest.approx(np.trace(G.T @ G) / len(G))
    assert report["ntk"]["kernel"].shape == (48, 48)
    assert {c[0] for c in calls} >= {"hessian_eigenvalues", "hessian_lanczos", "ggn_trace", "ggn_density"}
    assert all(done <= total for _, done, total in calls)


def test_each_quantity_has_its_own_random_stream(setup):
    net, loss, x, t, report, _ = setup
    alone = curvature_report(net, loss, x, t, ["hessian_trace"], seed=7, trace_probes=20)
    assert alone["hessian"]["hutchinson"] == report["hessian"]["hutchinson"]
    other = curvature_report(net, loss, x, t, ["hessian_trace"], seed=8, trace_probes=20)
    assert other["hessian"]["hutchinson"]["attrs"]["trace"] != alone["hessian"]["hutchinson"]["attrs"]["trace"]


def test_h5_round_trip_and_plot(setup, tmp_path):
    *_, report, _ = setup
    path = tmp_path / "curvature.h5"
    write_report_h5(path, report)
    back = read_report_h5(path)
    assert back["attrs"]["seed"] == 7 and back["attrs"]["loss"] == "cross_entropy"
    assert "refplastic_version" in back["attrs"]
    np.testing.assert_array_equal(back["hessian"]["eigenvalues"], report["hessian"]["eigenvalues"])
    np.testing.assert_array_equal(back["ggn"]["density"]["density"], report["ggn"]["density"]["density"])
    assert back["hessian"]["scalars"]["attrs"] == pytest.approx(report["hessian"]["scalars"]["attrs"], nan_ok=True)
    assert back["gradients"]["attrs"]["fisher_trace"] == report["gradients"]["attrs"]["fisher_trace"]
    plot_spectrum(report, tmp_path / "spectrum.png")
    assert (tmp_path / "spectrum.png").stat().st_size > 1000


def test_errors(setup, monkeypatch, tmp_path):
    net, loss, x, t, report, _ = setup
    with pytest.raises(ValueError, match="unknown quantities"):
        curvature_report(net, loss, x, t, ["hessian_spectrum"], seed=0)
    with pytest.raises(ValueError, match="max_exact_parameters"):
        curvature_report(net, loss, x, t, ["ggn_eigenvalues"], seed=0, max_exact_parameters=10)
    with pytest.raises(ValueError, match="no spectrum"):
        plot_spectrum({"gradients": {}}, tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(RuntimeError, match="needs matplotlib"):
        plot_spectrum(report, tmp_path / "x.png")


def test_relu_network_report_without_exact_spectra():
    rng = np.random.default_rng(1)
    net = Network([Linear(3, 5), ReLU(), Linear(5, 2)], rng)
    x, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    report = curvature_report(net, make_loss("mse"), x, t, ["ggn_lanczos", "hessian_density"], seed=0, top_k=2,
                              slq_probes=2, slq_steps=5)
    assert set(report) == {"attrs", "ggn", "hessian"}
    assert report["ggn"]["lanczos"]["bottom"].shape == (2,)


def test_quantities_that_overflow_are_named_without_warnings():
    """Weights of 1e80: the loss is finite, the curvature is not; each quantity either stays finite
    or raises one line naming it, and no NumPy warning escapes."""
    rng = np.random.default_rng(0)
    net = Network([Linear(4, 8), ReLU(), Linear(8, 8), ReLU(), Linear(8, 3)], rng)
    net.flat[...] *= 1e80
    x, t, loss = rng.normal(size=(16, 4)), rng.integers(0, 3, size=16), make_loss("cross_entropy")
    failed = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in QUANTITIES:
            try:
                curvature_report(net, loss, x, t, [name], seed=0, top_k=3, trace_probes=4, slq_probes=2)
            except NotFinite as e:
                assert str(e) == f"{name}: not finite on this batch (the network overflows)"
                failed.append(name)
    assert {"hessian_eigenvalues", "gradients", "ntk"} <= set(failed)


def test_every_quantity_has_one_formula_line_and_the_docs_table_says_the_same():
    """docs/curvature.md's table of quantities is written by hand; it must say what QUANTITY_FORMULAS says."""
    assert QUANTITIES == tuple(QUANTITY_FORMULAS)
    lines = describe_quantities().splitlines()
    assert [line.split()[0] for line in lines] == list(QUANTITIES)
    assert all(line.split(None, 1)[1] == QUANTITY_FORMULAS[line.split()[0]] for line in lines)
    text = (Path(__file__).resolve().parents[1] / "docs" / "curvature.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and re.fullmatch(r"`[a-z_]+`", cells[0]) and cells[0][1:-1] in QUANTITIES:
            rows[cells[0][1:-1]] = cells[1]
    assert rows == QUANTITY_FORMULAS
