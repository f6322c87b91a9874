"""Curvature speed: refplastic and torch side by side, in one process, on the same work.

Workloads (issue "curvature"):
- Hessian-vector product, MLP 784-256-256-10, batch 128, cross-entropy, float32 and float64.
  "fresh": forward, backward and the product from nothing (torch: ``autograd.grad`` with
  ``create_graph``, then ``autograd.grad`` of the gradient along v); "same batch": further
  products on a batch whose forward/backward is done (refplastic: ``CurvatureBatch.hvp``; torch:
  the retained gradient graph, ``retain_graph=True``).
- Full Hessian of a 16-32-32-4 tanh MLP on 64 examples, MSE, float64 (torch: ``torch.func.hessian``).
- Top-20 Hessian eigenvalues of the DQN "Nature" CNN (4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 ->
  512 -> 18) on a batch of 32, MSE, float32: Lanczos with full reorthogonalisation, 60 steps,
  the same refplastic Lanczos code driven by refplastic's HVP or by torch's double-backward HVP;
  and one HVP of that network.
Timing protocol: benchmarks/harness.py (``--lanczos-repeats`` rounds for the Lanczos runs).

    python benchmarks/bench_curvature.py [--threads 2] [--repeats 7] [--markdown] [--only TEXT]
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0], [(("--lanczos-repeats",), {"type": int, "default": 1})])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.curvature import CurvatureBatch, hessian, hvp, lanczos_extremes  # noqa: E402
from refplastic.nn import Linear, Tanh  # noqa: E402

def torch_hvp_closures(module, torch_loss, v):
    """torch HVPs along flat v by double backward: from nothing, and on a retained gradient graph."""
    params = list(module.parameters())
    vs = [a.reshape(p.shape) for a, p in zip(torch.split(torch.from_numpy(v), [p.numel() for p in params]), params)]

    def fresh():
        g = torch.autograd.grad(torch_loss(), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vs)

    g = torch.autograd.grad(torch_loss(), params, create_graph=True)
    return fresh, lambda: torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True)


def mlp_hvp(dtype, same_batch):
    net, loss, x, t, module, torch_loss = harness.problem(harness.mlp_layers(), (128, 784), "cross_entropy", dtype)
    v = np.random.default_rng(1).normal(size=net.num_parameters).astype(dtype)
    fresh, retained = torch_hvp_closures(module, torch_loss, v)
    if same_batch:
        batch = CurvatureBatch(net, loss, x, t)
        return (lambda: batch.hvp(v)), retained
    return (lambda: hvp(net, loss, x, t, v)), fresh


def small_hessian():
    net, loss, x, t, module, _ = harness.problem([Linear(16, 32), Tanh(), Linear(32, 32), Tanh(), Linear(32, 4)],
                                         (64, 16), "mse", np.float64)
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach() for p in module.parameters())
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def loss_of_params(*ps):
        return torch.nn.functional.mse_loss(torch.func.functional_call(module, dict(zip(names, ps)), (xt,)), tt)

    torch_hessian = torch.func.hessian(loss_of_params, argnums=tuple(range(len(params))))
    return (lambda: hessian(net, loss, x, t)), (lambda: torch_hessian(*params))


def nature_cnn(dtype):
    return harness.problem(harness.nature_cnn_layers(), (32, 4, 84, 84), "mse", dtype)


def cnn_hvp(dtype):
    net, loss, x, t, module, torch_loss = nature_cnn(dtype)
    v = np.random.default_rng(1).normal(size=net.num_parameters).astype(dtype)
    fresh, _ = torch_hvp_closures(module, torch_loss, v)
    return (lambda: hvp(net, loss, x, t, v)), fresh


def cnn_lanczos(dtype, k=20, steps=60):
    """Both Lanczos runs once (printing their largest Ritz values), then the timed closures."""
    net, loss, x, t, module, torch_loss = nature_cnn(dtype)
    P = net.num_parameters
    params = list(module.parameters())
    g = torch.autograd.grad(torch_loss(), params, create_graph=True)

    def torch_matvec(V):
        vs = [a.reshape(p.shape) for a, p in zip(torch.split(torch.from_numpy(V[0]), [p.numel() for p in params]),
                                                 params)]
        hv = torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).numpy()[None]

    def ours():
        batch = CurvatureBatch(net, loss, x, t)
        return lanczos_extremes(batch.hvp, P, k, np.random.default_rng(0), steps, dtype).top

    def theirs():
        return lanczos_extremes(torch_matvec, P, k, np.random.default_rng(0), steps, dtype).top

    top_ours, top_theirs = ours(), theirs()
    print(f"  Nature CNN top-{k} Ritz values after {steps} steps (P = {P}): largest {top_ours[-1]:.6g} (refplastic), "
          f"{top_theirs[-1]:.6g} (torch); max relative difference "
          f"{np.max(np.abs(top_ours - top_theirs)) / np.max(np.abs(top_theirs)):.1e}", flush=True)
    return ours, theirs


def workloads():
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        yield "HVP MLP 784-256-256-10, batch 128, fresh", name, lambda d=dtype: mlp_hvp(d, False), args.repeats, 3
        yield "HVP MLP 784-256-256-10, batch 128, same batch", name, lambda d=dtype: mlp_hvp(d, True), args.repeats, 3
    yield "Full Hessian 16-32-32-4 tanh, 64 examples (P=1732)", "float64", small_hessian, args.repeats, 3
    yield "HVP Nature CNN, batch 32, fresh", "float32", lambda: cnn_hvp(np.float32), args.repeats, 2
    yield "Top-20 Lanczos (60 HVPs) Nature CNN, batch 32", "float32", lambda: cnn_lanczos(np.float32), \
        args.lanczos_repeats, 0


if __name__ == "__main__":
    harness.run(workloads(), args)
