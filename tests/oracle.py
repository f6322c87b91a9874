"""Independent oracles for the layer tests: torch autograd (reverse mode, and reverse-over-reverse
for second order, never torch's forward mode) and central finite differences in float64.

``check_layer`` runs all four maps of one refplastic layer against both oracles on the scalar

    L(x, theta) = sum(w * y) + 0.5 * sum(c * y^2),    y = layer(x; theta)

whose cotangent is ``gy = w + c y`` and whose cotangent derivative is ``R{gy} = c Ry``, so the
R-backward is exercised with a non-zero ``R{gy}`` as it is inside a network.
"""

import numpy as np
import torch

from refplastic.nn import Network

TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def rel_err(a, b):
    """max |a - b| / max |b| (with a floor so that exact zeros compare absolutely)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def assert_close(a, b, rtol, what=""):
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


# refplastic's state names that torch spells otherwise, by layer type (docs/conventions.md)
TORCH_STATE_NAMES = {"SpectralNormLinear": {"weight": "parametrizations.weight.original",
                                            "u": "parametrizations.weight.0._u", "v": "parametrizations.weight.0._v"}}


def torch_layer(spec):
    """The torch module for one architecture entry ``{"type": ..., **kwargs}``."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "SpectralNormLinear":
        n, eps = spec.pop("n_power_iterations"), spec.pop("eps")
        return torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(**spec), n_power_iterations=n, eps=eps)
    return getattr(torch.nn, kind)(**spec)


def torch_state_name(net, name):
    """torch's name for the parameter or buffer ``name`` ("i.weight") of ``net``."""
    index, own = name.split(".", 1)
    return f"{index}.{TORCH_STATE_NAMES.get(type(net.layers[int(index)]).__name__, {}).get(own, own)}"


def torch_module(net):
    """The torch.nn.Sequential with ``net``'s architecture, parameters, buffers and mode."""
    module = torch.nn.Sequential(*[torch_layer(spec) for spec in net.architecture()]).to(TORCH_DTYPE[net.dtype])
    state = {torch_state_name(net, k): torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()}
    module.load_state_dict(state)
    module.train(net.training)
    return module


def _t(a, requires_grad=False):
    return torch.tensor(np.array(a), requires_grad=requires_grad)


def check_layer(layer, x_shape, rng, dtype=np.float64, input_grad=True, fd=True, rtol=None, K=2, batch_last=False):
    """Check forward, VJP, JVP and R-backward of ``layer`` on a random input of ``x_shape``
    (with ``batch_last``, a view of memory with the batch axis last, as a convolution's output).

    Compares with torch (reverse mode, and double backward for the second-order map) to ``rtol``
    and, in float64 with ``fd``, with central finite differences to 1e-6. The R-maps run on K
    tangents at once (the leading tangent axis); each is checked on its own. BatchNorm's running
    statistics are checked after the forward pass too.
    """
    rtol = RTOL[dtype] if rtol is None else rtol
    net = Network([layer], rng, dtype)
    module = torch_module(net)
    P = net.num_parameters
    x = rng.normal(size=x_shape).astype(dtype)
    if batch_last:
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 0, -1)), -1, 0)

    y, caches = net.forward_cached(x)
    xt = _t(x, requires_grad=input_grad)
    params = list(module.parameters())
    yt = module(xt)
    assert_close(y, yt.detach().numpy(), rtol, f"{layer} forward")
    for name, buf in net.named_buffers():
        assert_close(buf, module.state_dict()[torch_state_name(net, name)].numpy(), rtol, f"{layer} buffer {name}")

    w = rng.normal(size=y.shape).astype(dtype)
    c = rng.uniform(0.5, 1.5, size=y.shape).astype(dtype)
    rx = rng.normal(size=(K, *x_shape)).astype(dtype) if input_grad else None
    v = rng.normal(size=(K, P)).astype(dtype)

    # backward (VJP)
    gy = w + c * y
    grad, gx = net.backward(caches, gy, need_input_grad=input_grad)
    lt = (_t(w) * yt).sum() + 0.5 * (_t(c) * yt * yt).sum()
    inputs = ([xt] if input_grad else []) + params
    tgrads = torch.autograd.grad(lt, inputs, create_graph=True, allow_unused=True)
    tgrads = [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, tgrads)]
    tparam_grads = tgrads[1:] if input_grad else tgrads
    tflat = torch.cat([g.reshape(-1) for g in tparam_grads]) if params else torch.zeros(0, dtype=yt.dtype)
    assert_close(grad, tflat.detach().numpy(), rtol, f"{layer} parameter gradient")
    if input_grad:
        assert_close(gx, tgrads[0].detach().numpy(), rtol, f"{layer} input gradient")

    # forward_r (JVP) and backward_r, all K tangents at once
    ry, rcaches = layer.forward_r(caches[0], rx, net.unflatten(v)[0])
    ry = np.zeros((K, *y.shape), dtype) if ry is None else ry
    assert ry.shape == (K, *y.shape), f"{layer} forward_r shape {ry.shape}"
    rgrad = np.empty((K, P), dtype)
    rgy = c * ry
    rgx = layer.backward_r(caches[0], rcaches, gy, rgy, net.unflatten(rgrad)[0], need_input_grad=input_grad)

    u = torch.zeros_like(yt, requires_grad=True)
    vjp = torch.autograd.grad(yt, inputs, grad_outputs=u, create_graph=True, allow_unused=True)
    for k in range(K):
        # JVP by torch's double-backward trick (reverse over reverse)
        tangents = ([_t(rx[k])] if input_grad else []) + [_t(vi[k]) for vi in net.unflatten(v)[0].values()]
        inner = sum((g * tv).sum() for g, tv in zip(vjp, tangents) if g is not None)
        if torch.is_tensor(inner) and inner.requires_grad:
            ryt = torch.autograd.grad(inner, u, retain_graph=True)[0]
        else:
            ryt = torch.zeros_like(yt)
        assert_close(ry[k], ryt.detach().numpy(), rtol, f"{layer} forward_r[{k}]")
        # backward_r against the torch Hessian-vector product of L (double backward)
        hv = torch.autograd.grad(tgrads, inputs, grad_outputs=tangents, allow_unused=True, retain_graph=True)
        hv = [torch.zeros_like(i) if h is None else h for i, h in zip(inputs, hv)]
        tparam_hv = hv[1:] if input_grad else hv
        if params:
            assert_close(rgrad[k], torch.cat([h.reshape(-1) for h in tparam_hv]).numpy(), rtol,
                         f"{layer} backward_r params[{k}]")
        if input_grad:
            assert_close(rgx[k], hv[0].numpy(), rtol, f"{layer} backward_r input[{k}]")

    if fd and dtype == np.float64:
        check_layer_finite_differences(net, x, w, c, None if rx is None else rx[0], v[0], grad, gx, ry[0],
                                       rgrad[0], None if rgx is None else rgx[0])
    return net


def check_layer_finite_differences(net, x, w, c, rx, v, grad, gx, ry, rgrad, rgx, h=1e-5, tol=1e-6):
    """Central differences of L, y and (grad L) along (rx, v) against the analytic maps."""
    layer = net.layers[0]
    theta = net.get_flat()
    buffers = {k: b.copy() for k, b in layer.buffers.items()}
    rx0 = np.zeros_like(x) if rx is None else rx

    def at(eps):
        for k, b in buffers.items():
            layer.buffers[k][...] = b
        net.set_flat(theta + eps * v)
        y, caches = net.forward_cached(x + eps * rx0)
        L = float(np.sum(w * y) + 0.5 * np.sum(c * y * y))
        g, gxx = net.backward(caches, w + c * y, out=np.empty_like(theta), need_input_grad=rx is not None)
        return L, y, g, gxx

    Lp, yp, gp, gxp = at(h)
    Lm, ym, gm, gxm = at(-h)
    at(0.0)
    directional = float(grad @ v) + (float(np.sum(gx * rx)) if rx is not None else 0.0)
    assert abs((Lp - Lm) / (2 * h) - directional) <= tol * max(1.0, abs(directional)), f"{layer} gradient vs FD"
    assert_close(ry, (yp - ym) / (2 * h), tol, f"{layer} forward_r vs FD")
    if rgrad.size:
        assert_close(rgrad, (gp - gm) / (2 * h), tol, f"{layer} backward_r params vs FD")
    if rx is not None:
        assert_close(rgx, (gxp - gxm) / (2 * h), tol, f"{layer} backward_r input vs FD")


TORCH_LOSSES = {"mse": torch.nn.functional.mse_loss, "huber": torch.nn.functional.huber_loss,
                "cross_entropy": torch.nn.functional.cross_entropy}


def check_network(net, x, t, loss, rng, K=3):
    """Loss, gradient and K Hessian-vector products of a whole network against torch.

    The HVPs are the library's (:class:`refplastic.curvature.CurvatureBatch`: every layer's
    ``forward_r``, the loss's output Hessian, every layer's ``backward_r``) and are compared with
    torch's double backward, to ``RTOL``.
    """
    from refplastic.curvature import CurvatureBatch

    module = torch_module(net)
    rtol = RTOL[net.dtype]
    value, grad = net.loss_and_grad(x, t, loss)
    params = list(module.parameters())
    lt = TORCH_LOSSES[loss.name](module(torch.tensor(x)), torch.tensor(t))
    gt = torch.autograd.grad(lt, params, create_graph=True)
    assert_close(value, lt.item(), rtol, "loss")
    assert_close(grad, torch.cat([g.reshape(-1) for g in gt]).detach().numpy(), rtol, "gradient")

    V = rng.normal(size=(K, net.num_parameters)).astype(net.dtype)
    hv = CurvatureBatch(net, loss, x, t).hvp(V)
    for k in range(K):
        vs = [torch.tensor(V[k, s:e].reshape(p.shape)) for p, (s, e) in zip(params, net.parameter_offsets().values())]
        ht = torch.autograd.grad(gt, params, grad_outputs=vs, retain_graph=True)
        assert_close(hv[k], torch.cat([h.reshape(-1) for h in ht]).numpy(), rtol, f"HVP[{k}]")
