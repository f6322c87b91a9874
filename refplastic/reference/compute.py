"""Every reference quantity of one case, and reference files made from cases.

For a case with parameters theta (P entries), a batch (x, t) of N examples, outputs z (N x D per
example, M = N D entries) and the loss L (torch's mean reductions), all at the given parameters
and buffers (BatchNorm running statistics are read, never updated):

    outputs             z
    loss                L
    grads/<name>        dL/dtheta, one array per parameter; flat_grad the same as one (P,) vector
    flat_params         theta (P,)
    hvp/products        H v_k for the rows v_k of hvp/vectors (K, P): given, or
                        default_rng(0).standard_normal((4, P)) rounded to the case's dtype
    jacobian            J = dz/dtheta (M, P), z flattened in C order
    hessian, ggn        H = d^2L/dtheta^2 and G = J^T (d^2L/dz^2) J (P, P), only when P <= 5000;
                        hessian_eigenvalues, ggn_eigenvalues ascending
    per_example_grads   (N, P), row n = N dL_n/dtheta with L_n the part of L due to example n's
                        outputs, so the mean of the rows is flat_grad
    optim/<name>/flat_params_after
                        theta after one step from a fresh optimizer state with gradient flat_grad
                        (SGD with momentum, Adam, RMSprop; hyperparameters in the group's attrs)
    stats/names, stats/values
                        refplastic.stats.compute_statistics with its DEFAULT_STATISTICS
                        (docs/statistics.md): key names[k] has value values[k]

float32 cases are computed in float64 from their (exactly representable) float32 inputs and
parameters, and each quantity is rounded to float32 when stored.
"""

import h5py
import numpy as np

from ..curvature import CurvatureBatch, eigenvalues, ggn, hessian, jacobian, per_example_gradients
from ..nn import make_loss, make_optimizer
from ..memory import check_memory, reference_estimate, sizes
from ..overflow import NotFinite
from ..stats import DEFAULT_STATISTICS, compute_statistics
from .format import read_cases, reference_writer, write_case

MAX_EXACT_PARAMETERS = 5000
HVP_DIRECTIONS = 4
# group name -> torch.optim class name and constructor keyword arguments (refplastic takes the same)
OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}),
    "adam": ("Adam", {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}),
    "rmsprop": ("RMSprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                            "centered": False}),
}


def default_hvp_vectors(num_parameters, dtype):
    """``default_rng(0).standard_normal((4, P))`` rounded to ``dtype``: the directions when a case gives none."""
    return np.random.default_rng(0).standard_normal((HVP_DIRECTIONS, num_parameters)).astype(dtype)


def compute_case(case, max_exact_parameters=MAX_EXACT_PARAMETERS):
    """``(datasets, attrs)``: ``{path: array}`` of the input fields and every quantity (module docstring),
    in the case's dtype, and ``{"optim/<name>": hyperparameters}``.

    Finite inputs can still overflow (say, inputs of 1e300): a quantity that is not finite raises a
    one-line ValueError naming the case and the quantity.
    """
    with np.errstate(all="ignore"):
        return _compute_case(case, max_exact_parameters)


def _check_finite(case, out):
    for key, value in out.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"case {case.name!r}: {key} contains NaN or infinity "
                             f"(the numbers overflow; are the inputs or parameters too large?)")


def _compute_case(case, max_exact_parameters):
    net = case.network(np.float64)
    loss = make_loss(case.loss)
    x, t = case.inputs, case.targets
    P = net.num_parameters
    vectors = case.hvp_vectors if case.hvp_vectors is not None else default_hvp_vectors(P, case.dtype)

    batch = CurvatureBatch(net, loss, x, t)
    theta = net.get_flat()
    out = {"outputs": batch.z, "loss": np.array(batch.value), "flat_params": theta, "flat_grad": batch.grad,
           "hvp/vectors": vectors, "hvp/products": batch.hvp(vectors),
           "jacobian": jacobian(net, None, batch=batch),
           "per_example_grads": per_example_gradients(net, loss, x, t, batch=batch)}
    for name, (a, b) in net.parameter_offsets().items():
        out[f"grads/{name}"] = batch.grad[a:b].reshape(case.params[name].shape)
    _check_finite(case, out)
    if P <= max_exact_parameters:
        matrices = {"hessian": hessian(net, loss, x, t, batch=batch),
                    "ggn": ggn(net, loss, x, t, batch=batch, J=out["jacobian"])}
        _check_finite(case, matrices)
        for name, matrix in matrices.items():
            out[name], out[f"{name}_eigenvalues"] = matrix, eigenvalues(matrix)
    attrs = {}
    for name, (torch_name, hyperparameters) in OPTIMIZERS.items():
        after = theta.copy()
        make_optimizer(name, after, **hyperparameters).step(batch.grad.copy())
        out[f"optim/{name}/flat_params_after"] = after
        attrs[f"optim/{name}"] = {"type": torch_name, **hyperparameters}
    try:
        stats = compute_statistics(net, x, t, loss, DEFAULT_STATISTICS)
    except NotFinite as e:
        raise ValueError(f"case {case.name!r}: stats/values: {e}") from None
    out["stats/values"] = np.array(list(stats.values()))
    out = {k: v.astype(case.dtype) for k, v in out.items()}
    _check_finite(case, out)
    out["stats/names"] = np.array(list(stats), dtype=h5py.string_dtype("utf-8"))
    return {**case.datasets(), **out}, attrs


def check_case_memory(case):
    """:class:`~refplastic.memory.NotEnoughMemory` naming ``case`` if its estimated peak
    (:func:`refplastic.memory.reference_estimate`) is above the memory available."""
    check_memory(lambda s: [reference_estimate(s, MAX_EXACT_PARAMETERS, f"case {case.name!r}")],
                 sizes(case.network(np.float64), case.inputs), np.float64)


def write_reference(path, cases, progress=None):
    """Compute every case and write them to ``path`` atomically; ``progress("cases", done, total)``.

    Every case's memory is checked (:func:`check_case_memory`) before any is computed."""
    for case in cases:
        check_case_memory(case)
    with reference_writer(path) as group:
        for i, case in enumerate(cases):
            write_case(group, case, *compute_case(case))
            if progress is not None:
                progress("cases", i + 1, len(cases))


def compute_file(in_path, out_path, progress=None):
    """``refplastic compute IN --out OUT``: OUT holds IN's cases (input fields) with every quantity.

    Every case of IN is read and validated before anything is computed; OUT appears only when complete.
    """
    write_reference(out_path, read_cases(in_path), progress)
