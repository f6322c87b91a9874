"""The Double DQN learner step: refplastic and torch side by side, in one process, on the same work.

One step (refplastic.rl.learner.learner_step) on a replayed batch of 32 uint8 stacks (32, 4, 84, 84):
the target network and the online network on s' (no gradient), the online network on s, the loss
on Q(s, a), the backward pass and the optimiser step; float32, the Nature CNN with 6 actions
(Pong's), without and with a LayerNorm after every hidden layer. Two settings:

    cleanrl   Adam lr 1e-4, MSE                                       (CleanRL's dqn_atari.py)
    dqn-zoo   RMSprop centered, eps inside the square root, lr 2.5e-4, alpha 0.95, eps 0.01 / 32^2,
              and the clipped-gradient L2 loss                        (DQN Zoo's Double DQN)

torch's twin is the same step as a torch user writes it (torch.optim.Adam; for dqn-zoo optax's
RMSprop written with torch's foreach operations, as torch's own RMSprop is, and the clipped
gradient as an autograd Function). Timing protocol: benchmarks/harness.py; steps/s = 1000 / ms.

    python benchmarks/bench_dqn_update.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--probe]
    python benchmarks/bench_dqn_update.py --profile [--only NAME] [--threads 2]
    python benchmarks/bench_dqn_update.py --cpu-time --threads 1 [--repeats 7] [--only NAME]

``--profile`` times instead, per step, each layer map of refplastic's step (time.perf_counter
around every layer's forward and backward, the optimiser and the frame scaling; median over the
steps) and torch's operators by input shape (torch.profiler), for the workloads chosen.
``--cpu-time`` (with ``--threads 1``) times the process's CPU seconds instead of wall seconds, in
rounds of 8 steps alternating between the libraries: on a machine that other processes share, a
single-threaded step's CPU time still measures its work, where wall time measures the sharing.
"""

import time
from collections import defaultdict
from statistics import median

import harness

args = harness.parse_args(__doc__.split("\n")[0], [
    (("--profile",), dict(action="store_true", help="time every layer map of refplastic's step and torch's operators")),
    (("--cpu-time",), dict(action="store_true", help="time CPU seconds, not wall seconds (with --threads 1)"))])

import numpy as np  # noqa: E402
import torch  # noqa: E402

import refplastic.rl.learner  # noqa: E402

from refplastic.nn import Adam, Network, RMSprop, make_loss  # noqa: E402
from refplastic.rl.learner import learner_step  # noqa: E402
from refplastic.rl.nature_cnn import nature_cnn  # noqa: E402

BATCH, ACTIONS, GAMMA = 32, 6, 0.99
DQN_ZOO_RMSPROP = dict(lr=2.5e-4, alpha=0.95, eps=0.01 / 32**2, centered=True)


class ClipGradient(torch.autograd.Function):
    """rlax.clip_gradient: the identity, whose VJP clips the cotangent element by element."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.bound = bound
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(-ctx.bound, ctx.bound), None


class OptaxCenteredRMSprop:
    """optax.rmsprop(centered=True) in torch: nu, mu moving averages, p -= lr g / sqrt(nu - mu^2 + eps)."""

    def __init__(self, params, lr, alpha, eps, centered=True):
        self.params, self.lr, self.alpha, self.eps = list(params), lr, alpha, eps
        self.nu = [torch.zeros_like(p) for p in self.params]
        self.mu = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        torch._foreach_mul_(self.nu, self.alpha)
        torch._foreach_addcmul_(self.nu, grads, grads, value=1 - self.alpha)
        torch._foreach_lerp_(self.mu, grads, 1 - self.alpha)
        denominator = torch._foreach_addcmul(self.nu, self.mu, self.mu, value=-1)
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_sqrt_(denominator)
        torch._foreach_addcdiv_(self.params, grads, denominator, value=-self.lr)


def pair(layernorm, setting):
    """Closures doing one learner step in refplastic and in torch, from the same weights and batches."""
    rng = np.random.default_rng(0)
    net = Network.from_architecture(nature_cnn(ACTIONS, layernorm), rng, np.float32)
    target = Network.from_architecture(nature_cnn(ACTIONS, layernorm), rng, np.float32)
    module, target_module = harness.torch_twin(net), harness.torch_twin(target)
    batch = {"observation": rng.integers(0, 256, size=(BATCH, 4, 84, 84), dtype=np.uint8),
             "next_observation": rng.integers(0, 256, size=(BATCH, 4, 84, 84), dtype=np.uint8),
             "action": rng.integers(0, ACTIONS, size=BATCH), "reward": rng.choice([-1.0, 0.0, 1.0], size=BATCH),
             "discount": (rng.random(BATCH) > 0.05).astype(np.float64)}
    if setting == "cleanrl":
        opt, loss = Adam(net.flat, lr=1e-4), make_loss("mse")
        topt = torch.optim.Adam(module.parameters(), lr=1e-4)

        def torch_loss(q, y):
            return torch.nn.functional.mse_loss(q, y)
    else:
        opt, loss = RMSprop(net.flat, eps_in_sqrt=True, **DQN_ZOO_RMSPROP), make_loss("clipped_gradient_l2")
        topt = OptaxCenteredRMSprop(module.parameters(), **DQN_ZOO_RMSPROP)

        def torch_loss(q, y):
            return (0.5 * ClipGradient.apply(y - q, 1 / 32) ** 2).mean()

    x, next_x = torch.from_numpy(batch["observation"]), torch.from_numpy(batch["next_observation"])
    actions = torch.from_numpy(batch["action"])[:, None]
    rewards = torch.from_numpy(batch["reward"]).float()
    discounts = torch.from_numpy(batch["discount"]).float()

    def ours():
        learner_step(net, target, opt, loss, batch, GAMMA, double_q=True)

    ours.parts = net, target, opt

    def theirs():
        with torch.no_grad():
            s_next = next_x.float() / 255
            chosen = module(s_next).argmax(dim=1, keepdim=True)
            y = rewards + GAMMA * discounts * target_module(s_next).gather(1, chosen)[:, 0]
        q = module(x.float() / 255).gather(1, actions)[:, 0]
        value = torch_loss(q, y)
        topt.zero_grad()
        value.backward()
        topt.step()

    return ours, theirs


def workloads():
    for setting in ("cleanrl", "dqn-zoo"):
        for layernorm in (False, True):
            name = f"Double DQN step, batch 32, {setting}" + (", LayerNorm" if layernorm else "")
            yield name, "float32", lambda ln=layernorm, s=setting: pair(ln, s), args.repeats, 3


def timed(record, key, f):
    """``f`` that adds its seconds to ``record[key]``."""
    def wrapper(*a, **k):
        start = time.perf_counter()
        out = f(*a, **k)
        record[key] += time.perf_counter() - start
        return out
    return wrapper


def profile_refplastic(ours, steps=30):
    """Median ms per step of each layer map (forward summed over the step's calls), optimiser, scaling."""
    net, target, opt = ours.parts
    record, rows = defaultdict(float), defaultdict(list)
    for role, network in (("online", net), ("target", target)):
        for i, layer in enumerate(network.layers):
            name = f"{role} {i} {type(layer).__name__}"
            layer.forward = timed(record, (name, "forward"), layer.forward)
            layer.backward = timed(record, (name, "backward"), layer.backward)
    opt.step = timed(record, ("optimiser", "step"), opt.step)
    scale = refplastic.rl.learner.scaled_frames
    refplastic.rl.learner.scaled_frames = timed(record, ("scaled_frames", "both"), scale)
    for _ in range(3):
        ours()
    for _ in range(steps):
        record.clear()
        start = time.perf_counter()
        ours()
        record[("step", "total")] = time.perf_counter() - start
        for key, seconds in record.items():
            rows[key].append(seconds)
    refplastic.rl.learner.scaled_frames = scale
    for (name, what), seconds in rows.items():
        print(f"  refplastic {name:<28} {what:<9} {median(seconds) * 1e3:8.3f} ms")


def profile_torch(theirs, steps=30):
    for _ in range(3):
        theirs()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            theirs()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30,
                                                             max_shapes_column_width=60))
    print(f"  (torch: divide the totals by {steps} steps)")


def cpu_time_table(steps=8):
    """Median CPU ms a step of each library over ``args.repeats`` alternating rounds, and the median
    of the paired ratios (each refplastic round over the torch round after it)."""
    if args.threads != 1:
        raise SystemExit("--cpu-time measures work only with --threads 1")
    for name, dtype, make, _, warmup in workloads():
        if args.only not in name:
            continue
        ours, theirs = make()
        for f in (ours, theirs):
            for _ in range(warmup):
                f()
        times = {ours: [], theirs: []}
        for _ in range(args.repeats):
            for f in (ours, theirs):
                start = time.process_time()
                for _ in range(steps):
                    f()
                times[f].append((time.process_time() - start) / steps * 1e3)
        ratios = [a / b for a, b in zip(times[ours], times[theirs])]
        print(f"{name:<52} {dtype:<8} CPU ms refplastic {median(times[ours]):8.2f}  "
              f"torch {median(times[theirs]):8.2f}  ratio {median(ratios):5.2f}  "
              f"rounds {min(ratios):.2f}-{max(ratios):.2f}", flush=True)


if __name__ == "__main__":
    if args.cpu_time:
        cpu_time_table()
    elif args.profile:
        for name, dtype, make, _, _ in workloads():
            if args.only in name:
                print(name, dtype, flush=True)
                ours, theirs = make()
                profile_refplastic(ours)
                profile_torch(theirs)
    else:
        harness.run(workloads(), args)
        print(f"steps/s = 1000 / ms; batch {BATCH}, {ACTIONS} actions")
