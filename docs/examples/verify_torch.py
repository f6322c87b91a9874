"""Check PyTorch against a refplastic reference file: rebuild every case in torch, compute every
quantity the reference holds, write them as THEIRS, then let refplastic compare.

    python docs/examples/verify_torch.py results/reference.h5 theirs.h5
    refplastic verify theirs.h5 --reference results/reference.h5

Needs only torch, h5py and numpy (not refplastic). Every derivative here is plain autograd
reverse mode: torch.autograd.grad, and twice (reverse over reverse) for second derivatives.
The statistics (stats/...) are not computed: verify reports them missing, which is not a failure.

The parameters are one flat leaf vector theta (torch's named_parameters() order, each flattened in
C order), fed to the module with torch.func.functional_call, so every gradient is a flat vector.
The reference computes everything at the given BatchNorm running statistics; torch's train-mode
forward updates them in place, so it gets copies, and THEIRS records the buffers as given.

At the end, a table of second derivatives by torch.func transforms against the reference. In
torch 2.13 torch.func.hessian (jacfwd over jacrev) is wrong through LayerNorm and train-mode
BatchNorm (relative errors 0.03 to 0.2 on the suite), and so is jacrev over jacrev, while
jacfwd(grad) and the HVP jvp(grad) agree to 1e-15: what goes wrong is differentiating
torch.func.jacrev's vmapped VJP of the normalisation, not forward mode as such.
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
    if loss == "mse":
        return F.mse_loss(z, t, reduction="none").flatten(1).mean(1)
    return F.huber_loss(z, t, reduction="none", delta=1.0).flatten(1).mean(1)


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


def torch_func_errors(case, reference):
    """Relative errors against the reference of second derivatives by torch.func transforms, or the
    error torch raises: the Hessian as jacfwd(jacrev(f)) (= torch.func.hessian), jacrev(jacrev(f))
    and jacfwd(grad(f)), and the HVP jvp(grad(f), v). Train-mode BatchNorm uses batch statistics
    without buffer updates there (torch.func.replace_all_batch_norm_modules_), and the loss is the
    mean of the example losses: the same functions of theta, in a form torch.func takes (in torch
    2.13, forward mode through F.mse_loss's mean reduction raises "ZeroTensors are immutable", and
    F.huber_loss has no forward-mode derivative of its backward)."""
    module = copy.deepcopy(case.module)
    if module.training:
        torch.func.replace_all_batch_norm_modules_(module)

    def loss_of(theta):
        return example_losses(case.loss, case.outputs(theta, module), case.t).mean()

    def error(compute_torch, ref):
        try:
            a = compute_torch().numpy()
        except RuntimeError as e:
            return f"raises: {str(e).splitlines()[0]}"
        return f"{np.max(np.abs(a - ref)) / np.max(np.abs(ref)):.1e}"

    H, v = reference["hessian"][()], tensor(reference["hvp/vectors"])[0]
    func = torch.func
    return [error(lambda: func.jacfwd(func.jacrev(loss_of))(case.theta), H),
            error(lambda: func.jacrev(func.jacrev(loss_of))(case.theta), H),
            error(lambda: func.jacfwd(func.grad(loss_of))(case.theta), H),
            error(lambda: func.jvp(func.grad(loss_of), (case.theta,), (v,))[1], reference["hvp/products"][0])]


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
            if "hessian" in reference:
                demo.append((name, *torch_func_errors(case, reference)))
    print("\nSecond derivatives by torch.func, max|torch - reference| / max|reference| "
          "(hessian = torch.func.hessian = jacfwd(jacrev)):")
    headers, raised = ["hessian", "jacrev(jacrev)", "jacfwd(grad)", "jvp(grad) HVP"], {}
    print(f"{'case':<26}" + "".join(f"{h:>16}" for h in headers))
    for name, *errors in demo:
        cells = [raised.setdefault(e, f"[{len(raised) + 1}]") if e.startswith("raises") else e for e in errors]
        print(f"{name:<26}" + "".join(f"{c:>16}" for c in cells))
    for message, mark in raised.items():
        print(f"{mark} {message}")
    print(f"wrote {args.theirs}")


if __name__ == "__main__":
    main()
