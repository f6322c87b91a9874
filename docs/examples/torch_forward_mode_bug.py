"""torch 2.13's torch.func Hessians through LayerNorm and BatchNorm, against three other routes.

Linear(4, 5) - LayerNorm(5) or BatchNorm1d(5) (train mode) - Linear(5, 3), MSE loss on 6
examples, float64, parameters perturbed away from the normalisation's initial (1, 0). The full
Hessian by:

    torch.func                 hessian (jacfwd of jacrev), jacrev(jacrev), jacrev(grad), jacfwd(grad)
    double backward            torch.autograd.grad twice (reverse-over-reverse), row by row
    finite differences         central differences of torch's reverse-mode gradient, h = 1e-5
    refplastic                 refplastic.curvature.hessian (hand-written R-operator)

Run from the repository root:  python docs/examples/torch_forward_mode_bug.py
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from refplastic.curvature import hessian  # noqa: E402
from refplastic.nn import BatchNorm1d, LayerNorm, Linear, Network, make_loss  # noqa: E402


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def compare(norm):
    """Print the four Hessians' asymmetry and their distances for Linear - ``norm`` - Linear."""
    rng = np.random.default_rng(0)
    net = Network([Linear(4, 5), norm, Linear(5, 3)], rng)
    net.flat[...] += rng.normal(scale=0.5, size=net.num_parameters)
    x, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    ours = hessian(net, make_loss("mse"), x, t, symmetrize=False)

    # batch statistics only: the same function as refplastic's train mode, without buffer updates
    torch_norm = torch.nn.BatchNorm1d(5, track_running_stats=False) if isinstance(norm, BatchNorm1d) \
        else torch.nn.LayerNorm(5)
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch_norm, torch.nn.Linear(5, 3)).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()
                            if k in module.state_dict()})
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def loss_of_flat(flat):
        parts = torch.split(flat, [s.numel() for s in shapes])
        params = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes)}
        return torch.nn.functional.mse_loss(torch.func.functional_call(module, params, (xt,)), tt)

    def reverse_gradient(flat, create_graph=False):
        flat = flat.clone().requires_grad_(True) if not flat.requires_grad else flat
        return torch.autograd.grad(loss_of_flat(flat), flat, create_graph=create_graph)[0]

    theta = torch.from_numpy(net.get_flat())
    P = theta.numel()
    func = torch.func
    transforms = {"torch.func.hessian": func.hessian(loss_of_flat),
                  "jacrev(jacrev)": func.jacrev(func.jacrev(loss_of_flat)),
                  "jacrev(grad)": func.jacrev(func.grad(loss_of_flat)),
                  "jacfwd(grad)": func.jacfwd(func.grad(loss_of_flat))}
    leaf = theta.clone().requires_grad_(True)
    grad = reverse_gradient(leaf, create_graph=True)
    double_backward = np.stack([torch.autograd.grad(grad[i], leaf, retain_graph=True)[0].numpy()
                                for i in range(P)])
    h = 1e-5
    finite_differences = np.stack([(reverse_gradient(theta + h * e) - reverse_gradient(theta - h * e)).numpy()
                                   / (2 * h) for e in torch.eye(P, dtype=torch.float64)])

    print(f"\nLinear - {torch_norm} - Linear: P = {P} parameters, float64")
    print(f"{'':26}{'asymmetry':>11}{'vs finite diff.':>17}{'vs double backward':>20}")
    for label, H in [*transforms.items(), ("torch double backward", double_backward), ("refplastic", ours),
                     ("finite differences", finite_differences)]:
        try:
            H = H(theta).numpy() if callable(H) else H
        except RuntimeError as error:
            print(f"{label:<26}  RuntimeError: {str(error).split('.')[0]}")
            continue
        print(f"{label:<26}{rel(H, H.T):>11.2e}{rel(H, finite_differences):>17.2e}"
              f"{rel(H, double_backward):>20.2e}")


print(f"torch {torch.__version__}; asymmetry = max|H - H^T| / max|H|, distances = max|A - B| / max|B|")
compare(LayerNorm(5))
compare(BatchNorm1d(5))
