"""Check PyTorch against a refplastic reference file: rebuild every case in torch, compute every
quantity the reference holds, write them as THEIRS, then let refplastic compare.

    python docs/examples/verify_torch.py results/reference.h5 theirs.h5
    refplastic verify theirs.h5 --reference results/reference.h5

Needs only torch, h5py and numpy (not refplastic). Every derivative is reverse mode:
torch.autograd.grad, and twice (reverse over reverse) for second derivatives. torch 2.13's
forward-mode second derivatives are wrong through LayerNorm and BatchNorm (pytorch/pytorch
issues 196700 and 196699); the end of the run shows by how much, for the cases that have them.

The parameters are one flat leaf vector theta (torch's named_parameters() order, each flattened in
C order), fed to the module with torch.func.functional_call, so every gradient is a flat vector.
The reference computes everything at the given BatchNorm running statistics; torch's train-mode
forward updates them in place, so it gets copies, and THEIRS records the buffers as given.
"""

import argparse
import copy
import json

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
LOSSES = {"mse": nn.MSELoss(), "cross_entropy": nn.CrossEntropyLoss(), "huber": nn.HuberLoss(delta=1.0)}


def tensor(dataset):
    """An HDF5 dataset as a torch tensor (0-d datasets included)."""
    return torch.from_numpy(np.asarray(dataset[()]))


def example_losses(loss, z, t):
    """l_n, the loss of example n with the same reduction over its own outputs, so that mean_n l_n = L."""
    if loss == "cross_entropy":
        return F.cross_entropy(z, t, reduction="none")
    elementwise = F.mse_loss(z, t, reduction="none") if loss == "mse" else F.huber_loss(z, t, reduction="none", delta=1.0)
    return elementwise.flatten(1).mean(1)


class Case:
    """One reference case rebuilt in torch: module, flat parameters, buffers, batch and loss."""

    def __init__(self, group):
        self.dtype = TORCH_DTYPES[group.attrs["dtype"]]
        self.loss = group.attrs["loss"]
        architecture = json.loads(group.attrs["architecture"])
        self.module = nn.Sequential(*[getattr(nn, d.pop("type"))(**d) for d in architecture]).to(self.dtype)
        self.module.train(group.attrs["mode"] == "train")
        self.names = [name for name, _ in self.module.named_parameters()]
        self.shapes = [p.shape for _, p in self.module.named_parameters()]
        self.buffers = {n: tensor(group["buffers"][n]) for n, _ in self.module.named_buffers()}
        params = {n: tensor(group["params"][n]) for n in self.names}
        self.module.load_state_dict({**params, **self.buffers})
        self.theta = torch.cat([params[n].reshape(-1) for n in self.names])
        self.x = tensor(group["inputs"])
        self.t = tensor(group["targets"])

    def outputs(self, theta, module=None):
        """z = module(x) with parameters theta; self.module gets copies of the given buffers (its
        train-mode forward would update them), another module uses its own."""
        params = dict(zip(self.names, (p.reshape(s) for p, s in zip(theta.split([s.numel() for s in self.shapes]),
                                                                      self.shapes))))
        buffers = {n: b.clone() for n, b in self.buffers.items()} if module is None else {}
        return torch.func.functional_call(module or self.module, {**params, **buffers}, (self.x,))

    def loss_value(self, theta, module=None):
        return LOSSES[self.loss](self.outputs(theta, module), self.t)


def rows(outputs, wrt, count):
    """Reverse-mode rows d outputs[i] / d wrt for i < count (retaining the graph), stacked."""
    return torch.stack([torch.autograd.grad(outputs[i], wrt, retain_graph=True)[0] for i in range(count)])


def compute(case, reference):
    """Every quantity that the reference group holds, computed with torch reverse mode."""
    theta = case.theta.clone().requires_grad_(True)
    z = case.outputs(theta)
    L = LOSSES[case.loss](z, case.t)
    (g,) = torch.autograd.grad(L, theta, create_graph=True)
    P, flat_z = theta.numel(), z.reshape(-1)
    out = {"outputs": z, "loss": L, "flat_params": theta, "flat_grad": g}
    offsets = np.cumsum([0] + [s.numel() for s in case.shapes])
    out.update({f"grads/{n}": g[a:b].reshape(s) for n, a, b, s in zip(case.names, offsets, offsets[1:], case.shapes)})

    V = tensor(reference["hvp/vectors"])
    out["hvp/vectors"] = V
    out["hvp/products"] = torch.stack([torch.autograd.grad(g, theta, v, retain_graph=True)[0] for v in V])
    J = rows(flat_z, theta, flat_z.numel())
    out["jacobian"] = J
    out["per_example_grads"] = rows(example_losses(case.loss, z, case.t), theta, len(z))
    if "hessian" in reference:
        H = rows(g, theta, P)
        out["hessian"], out["hessian_eigenvalues"] = H, torch.linalg.eigvalsh(H)
    if "ggn" in reference:
        zl = z.detach().requires_grad_(True)
        (gz,) = torch.autograd.grad(LOSSES[case.loss](zl, case.t), zl, create_graph=True)
        Hz = rows(gz.reshape(-1), zl, zl.numel()).reshape(zl.numel(), -1)  # d^2 L / dz^2
        G = J.T @ Hz @ J
        out["ggn"], out["ggn_eigenvalues"] = G, torch.linalg.eigvalsh(G)
    for name, group in reference.get("optim", {}).items():
        hyperparameters = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in group.attrs.items()}
        optimizer_class = getattr(torch.optim, hyperparameters.pop("type"))
        params = [p.detach().clone().requires_grad_(True) for p in case.theta.split(list(np.diff(offsets)))]
        for p, gp in zip(params, g.detach().split(list(np.diff(offsets)))):
            p.grad = gp.clone()
        optimizer_class(params, **hyperparameters).step()
        out[f"optim/{name}/flat_params_after"] = torch.cat([p.detach() for p in params])
    return {k: v.detach().numpy() for k, v in out.items()}


def forward_mode_errors(case, reference):
    """Relative errors of torch.func.hessian (jacfwd over jacrev) and of a forward-over-reverse HVP
    (jvp of grad) against the reference, or the error torch raises. Train-mode BatchNorm uses batch
    statistics there, without buffer updates (torch.func.replace_all_batch_norm_modules_): the same
    function of theta."""
    module = copy.deepcopy(case.module)
    if module.training:
        torch.func.replace_all_batch_norm_modules_(module)

    def loss_of(theta):
        return case.loss_value(theta, module)

    def error(compute_torch, ref):
        try:
            a = compute_torch().numpy()
        except RuntimeError as e:
            return f"fails ({type(e).__name__}: {str(e).split('.')[0]})"
        return f"{np.max(np.abs(a - ref)) / np.max(np.abs(ref)):.2e}"

    v = tensor(reference["hvp/vectors"])[0]
    return (error(lambda: torch.func.hessian(loss_of)(case.theta), reference["hessian"][()]),
            error(lambda: torch.func.jvp(torch.func.grad(loss_of), (case.theta,), (v,))[1],
                  reference["hvp/products"][0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="a refplastic reference file (refplastic reference --out FILE)")
    parser.add_argument("theirs", help="where to write torch's numbers")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    demo = []
    with h5py.File(args.reference, "r") as ref, h5py.File(args.theirs, "w") as out:
        out.attrs.update({"format": "refplastic-reference", "version": 1,
                          "command": "docs/examples/verify_torch.py", "torch_version": str(torch.__version__)})
        names = args.cases.split(",") if args.cases else list(ref["cases"])
        for name in names:
            reference = ref["cases"][name]
            case = Case(reference)
            group = out.create_group(f"cases/{name}")
            group.attrs.update(reference.attrs)
            for key in ("inputs", "targets", *(f"params/{n}" for n in reference["params"]),
                        *(f"buffers/{n}" for n in reference.get("buffers", {}))):
                group[key] = reference[key][()]
            for key, value in compute(case, reference).items():
                group[key] = value
            print(f"computed {name}")
            if "hessian" in reference and any(isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d))
                                              for m in case.module):
                demo.append((name, *forward_mode_errors(case, reference)))
    if demo:
        print("\nforward mode (torch.func), error = max|torch - reference| / max|reference|:")
        print(f"{'case':<24}{'torch.func.hessian':>20}  jvp(grad) HVP")
        for name, hessian_error, hvp_error in demo:
            print(f"{name:<24}{hessian_error:>20}  {hvp_error}")
    print(f"wrote {args.theirs}")


if __name__ == "__main__":
    main()
