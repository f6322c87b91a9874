"""Check JAX against a refplastic reference file: rebuild every case in jax.numpy, compute every
quantity the reference holds, write them as THEIRS, then let refplastic compare.

    python docs/examples/verify_jax.py results/reference.h5 theirs.h5
    refplastic verify theirs.h5 --reference results/reference.h5

Needs only jax, h5py and numpy (not refplastic, torch, flax or optax). float64 must be switched on
(``jax_enable_x64``) before any array is made; a float32 case then stays float32 throughout.

Each architecture (a JSON list of torch.nn layer descriptions) becomes one pure function
``outputs(theta)`` of the flat parameter vector theta (torch's named_parameters() order, each
parameter flattened in C order), written with jax.numpy and jax.lax in torch's conventions
(docs/conventions.md). Being pure, it never updates BatchNorm's running statistics, which is what
the reference computes. Derivatives, all in one jax.jit-compiled function per case: jax.grad for
the gradient, forward over reverse (jax.jvp of jax.grad) for Hessian-vector products, jax.jacrev
for the Jacobian and the per-example gradients, jax.hessian (jacfwd over jacrev) for the Hessian
and for the loss's Hessian in the outputs (the GGN's middle factor). All of them agree with the
suite to about 1e-15 in float64, LayerNorm and train-mode BatchNorm included. The optimizer steps
are torch.optim's first steps, written out. The statistics (stats/...) are not computed: verify
reports them missing, which is not a failure.

One trap: max-pooling is lax.reduce_window(x, -jnp.inf, lax.max, ...), and its initial value must
be a plain Python float (jnp.inf is one); with jnp.array(-jnp.inf) there, differentiating the
jitted function fails ("Linearization failed to produce known values for all output primals").
"""

import argparse
import json
from functools import partial

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)


# ---- layers: (params, x) -> y for each torch.nn type, train says whether BatchNorm uses batch statistics

def pair(value):
    """An int or a pair (height, width), as a pair."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def linear(p, x, **_):
    """y = x W^T + b."""
    y = x @ p["weight"].T
    return y + p["bias"] if "bias" in p else y


def conv2d(p, x, stride=1, padding=0, **_):
    """Cross-correlation with zero padding, NCHW images and OIHW weights, as torch.nn.Conv2d."""
    if isinstance(padding, str):
        padding = padding.upper()  # "valid" / "same", as lax spells them
    else:
        padding = [(n, n) for n in pair(padding)]
    y = lax.conv_general_dilated(x, p["weight"], pair(stride), padding, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p["bias"][:, None, None] if "bias" in p else y


def max_pool2d(p, x, kernel_size, stride=None, padding=0, **_):
    """The maximum over each window, padding -inf; stride defaults to the kernel size."""
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(stride if stride is not None else kernel_size)
    # -jnp.inf is a Python float; jnp.array(-jnp.inf) here breaks differentiating it under jax.jit
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, kh, kw), (1, 1, sh, sw),
                             ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def flatten(p, x, start_dim=1, end_dim=-1, **_):
    """Axes start_dim..end_dim as one."""
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def layer_norm(p, x, normalized_shape, eps=1e-5, **_):
    """(x - mean) / sqrt(var + eps) over the last len(normalized_shape) axes (biased variance), then w y + b."""
    axes = tuple(range(-len(normalized_shape), 0)) if isinstance(normalized_shape, (list, tuple)) else (-1,)
    mean = x.mean(axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(axes, keepdims=True) + eps)
    y = y * p["weight"] if "weight" in p else y
    return y + p["bias"] if "bias" in p else y


def batch_norm(p, x, buffers, train, eps=1e-5, track_running_stats=True, **_):
    """Normalise each channel (axis 1) with the batch's mean and biased variance (train mode, or no
    running statistics) or with the running statistics (eval mode), then w y + b per channel."""
    channel = (1, -1) + (1,) * (x.ndim - 2)
    if train or not track_running_stats:
        axes = (0,) + tuple(range(2, x.ndim))
        mean = x.mean(axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axes, keepdims=True)
    else:
        mean, var = buffers["running_mean"].reshape(channel), buffers["running_var"].reshape(channel)
    y = (x - mean) / jnp.sqrt(var + eps)
    y = y * p["weight"].reshape(channel) if "weight" in p else y
    return y + p["bias"].reshape(channel) if "bias" in p else y


LAYERS = {
    "Linear": linear,
    "Conv2d": conv2d,
    "MaxPool2d": max_pool2d,
    "Flatten": flatten,
    "LayerNorm": layer_norm,
    "BatchNorm1d": batch_norm,
    "BatchNorm2d": batch_norm,
    "ReLU": lambda p, x, **_: jax.nn.relu(x),  # derivative 0 at 0, as torch
    "LeakyReLU": lambda p, x, negative_slope=0.01, **_: jnp.where(x > 0, x, negative_slope * x),  # slope at 0
    "Tanh": lambda p, x, **_: jnp.tanh(x),
    "Sigmoid": lambda p, x, **_: jax.nn.sigmoid(x),
    "GELU": lambda p, x, approximate="none", **_: jax.nn.gelu(x, approximate=approximate == "tanh"),
    "Identity": lambda p, x, **_: x,
}


# ---- losses: torch's mean reductions, and l_n, example n's own loss, with mean_n l_n = L

def example_losses(loss, z, t):
    """l_n: cross-entropy of row n (class labels or probabilities), else the mean over example n's outputs."""
    if loss == "cross_entropy":
        log_p = jax.nn.log_softmax(z, axis=1)
        if t.ndim == 1:
            return -jnp.take_along_axis(log_p, t[:, None], axis=1)[:, 0]
        return -(t * log_p).sum(1)
    d = z - t
    if loss == "mse":
        elementwise = d ** 2
    else:  # huber, delta 1
        elementwise = jnp.where(jnp.abs(d) < 1, 0.5 * d ** 2, jnp.abs(d) - 0.5)
    return elementwise.reshape(len(z), -1).mean(1)


def mean_loss(loss, z, t):
    return example_losses(loss, z, t).mean()


# ---- optimizers: torch.optim's first step from a fresh state, gradient g

def sgd_step(theta, g, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, **_):
    """The first momentum buffer is the gradient itself (no dampening on the first step)."""
    g = g + weight_decay * theta
    if momentum and nesterov:  # the step is g + momentum buf, buf = g
        g = g + momentum * g
    return theta - lr * g


def adam_step(theta, g, lr, betas, eps, weight_decay=0, amsgrad=False, **_):
    """m = (1 - b1) g, v = (1 - b2) g^2, theta - lr / (1 - b1) m / (sqrt(v) / sqrt(1 - b2) + eps), in torch's order."""
    b1, b2 = betas
    g = g + weight_decay * theta
    m, v = (1 - b1) * g, (1 - b2) * g * g  # amsgrad's max(0, v) is v on the first step
    return theta - lr / (1 - b1) * (m / (jnp.sqrt(v) / (1 - b2) ** 0.5 + eps))  # Python floats keep float32


def rmsprop_step(theta, g, lr, alpha, eps, weight_decay=0, momentum=0, centered=False, **_):
    """s = (1 - alpha) g^2 (minus the square of mean (1 - alpha) g when centered), theta - lr g / (sqrt(s) + eps);
    with momentum the first buffer is that same step."""
    g = g + weight_decay * theta
    square = (1 - alpha) * g * g
    if centered:
        square = square - ((1 - alpha) * g) ** 2
    return theta - lr * (g / (jnp.sqrt(square) + eps))


OPTIMIZERS = {"SGD": sgd_step, "Adam": adam_step, "RMSprop": rmsprop_step}


# ---- a case: the network as a function of theta

def by_layer(arrays, count):
    """[{name: array} of layer i for i < count] from torch's state-dict names {"i.name": array}."""
    layers = [{} for _ in range(count)]
    for key, array in arrays.items():
        i, name = key.split(".", 1)
        layers[int(i)][name] = array
    return layers


class Case:
    """One reference case: architecture, flat parameters theta, buffers, batch and loss."""

    def __init__(self, group):
        self.loss = group.attrs["loss"]
        self.train = group.attrs["mode"] == "train"
        self.architecture = json.loads(group.attrs["architecture"])
        # torch's named_parameters() order: layer by layer, weight before bias
        self.names = [f"{i}.{n}" for i in range(len(self.architecture)) for n in ("weight", "bias")
                      if f"{i}.{n}" in group["params"]]
        self.shapes = [group["params"][n].shape for n in self.names]
        self.theta = jnp.concatenate([jnp.asarray(group["params"][n][()]).reshape(-1) for n in self.names])
        self.buffers = by_layer({n: jnp.asarray(b[()]) for n, b in group.get("buffers", {}).items()},
                                len(self.architecture))
        self.x = jnp.asarray(group["inputs"][()])
        self.t = jnp.asarray(group["targets"][()])

    def split(self, theta):
        """{name: parameter} from the flat vector."""
        sizes = np.cumsum([int(np.prod(s)) for s in self.shapes])[:-1]
        return {n: p.reshape(s) for n, p, s in zip(self.names, jnp.split(theta, sizes), self.shapes)}

    def outputs(self, theta):
        """z = network(x) with parameters theta."""
        y = self.x
        for spec, p, buffers in zip(self.architecture, by_layer(self.split(theta), len(self.architecture)),
                                    self.buffers):
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            if spec["type"].startswith("BatchNorm"):
                kwargs.update(buffers=buffers, train=self.train)
            y = LAYERS[spec["type"]](p, y, **kwargs)
        return y

    def loss_of(self, theta):
        return mean_loss(self.loss, self.outputs(theta), self.t)


def derivatives(case, theta, V, curvature):
    """The network's outputs, loss and derivatives at theta (curvature: also the Hessian and the GGN)."""
    z = case.outputs(theta)
    L, g = jax.value_and_grad(case.loss_of)(theta)
    out = {"outputs": z, "loss": L, "flat_params": theta, "flat_grad": g}
    out.update({f"grads/{n}": p for n, p in case.split(g).items()})

    def hvp(v):
        """H v, forward over reverse."""
        return jax.jvp(jax.grad(case.loss_of), (theta,), (v,))[1]

    out["hvp/vectors"], out["hvp/products"] = V, jax.vmap(hvp)(V)
    J = jax.jacrev(lambda th: case.outputs(th).reshape(-1))(theta)
    out["jacobian"] = J
    out["per_example_grads"] = jax.jacrev(lambda th: example_losses(case.loss, case.outputs(th), case.t))(theta)
    if curvature:
        H = jax.hessian(case.loss_of)(theta)
        Hz = jax.hessian(partial(mean_loss, case.loss, t=case.t))(z).reshape(z.size, z.size)  # d^2 L / dz^2
        G = J.T @ Hz @ J
        out.update({"hessian": H, "hessian_eigenvalues": jnp.linalg.eigvalsh(H),
                    "ggn": G, "ggn_eigenvalues": jnp.linalg.eigvalsh(G)})
    return out


def compute(case, reference):
    """Every quantity that the reference group holds: the derivatives by one jax.jit-compiled function
    (op by op, JAX would compile each operation of each transform separately: minutes, not seconds),
    then the optimizer steps."""
    V = jnp.asarray(reference["hvp/vectors"][()])
    out = jax.jit(partial(derivatives, case, curvature="hessian" in reference))(case.theta, V)
    for name, group in reference.get("optim", {}).items():
        hyperparameters = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in group.attrs.items()}
        step = OPTIMIZERS[hyperparameters.pop("type")]
        out[f"optim/{name}/flat_params_after"] = step(case.theta, out["flat_grad"], **hyperparameters)
    return {k: np.asarray(v) for k, v in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="a refplastic reference file (refplastic reference --out FILE)")
    parser.add_argument("theirs", help="where to write JAX's numbers")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    args = parser.parse_args()
    with h5py.File(args.reference, "r") as ref, h5py.File(args.theirs, "w") as out:
        out.attrs.update({"format": "refplastic-reference", "version": 1,
                          "command": "docs/examples/verify_jax.py", "jax_version": jax.__version__})
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
    print(f"wrote {args.theirs}")


if __name__ == "__main__":
    main()
