"""The plasticity run's two steps, refplastic and torch side by side, in one process.

Workloads (issue "The plasticity experiment"), at the laptop preset (``refplastic run --preset
laptop --show-config``: hard task, built-in 3x32x32 frames, batch 64, Adam, float32; the main step
in float64 too), for the MLP and the CNN:

- main step: what ``Run.train_step`` does: act epsilon-greedily (a batch-1 forward), step the MDP,
  store the transition, sample a minibatch, the target network's forward on the next states, the
  TD target, a forward and backward on the TD loss of the taken actions, an Adam step. refplastic
  times ``Run.train_step`` itself; torch times the same loop written with torch modules (the MDP,
  the replay buffer and the image lookup are the same NumPy code in both);
- probe step: one Adam step of the ten probe copies, each on its own regression target (MSE on a
  shared minibatch of 64), as ``refplastic.plasticity.probes.run_probe`` does; torch with
  ``torch.vmap`` over ``torch.func.grad`` and with a loop over the ten modules.

Timing protocol: benchmarks/harness.py.

    python benchmarks/bench_protocol.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--probe]
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.data.images import to_float  # noqa: E402
from refplastic.nn import Adam, Ensemble, make_loss  # noqa: E402
from refplastic.plasticity.agent import epsilon_greedy  # noqa: E402
from refplastic.plasticity.config import preset  # noqa: E402
from refplastic.plasticity.experiment import load_data  # noqa: E402
from refplastic.plasticity.run import Run  # noqa: E402

E = 10


def laptop_run(arch, dtype):
    """A laptop-preset run of ``arch`` in ``dtype``, its replay buffer filled past learning_starts."""
    config = preset("laptop", arch=arch, dtype=dtype)
    run = Run(config, load_data(config))
    run._gather()
    return run


def main_step_pair(arch, dtype):
    run = laptop_run(arch, dtype)
    twin, target = harness.torch_twin(run.net), harness.torch_twin(run.target)
    c = run.config
    optimizer = torch.optim.Adam(twin.parameters(), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
    torch_dtype = getattr(torch, dtype)
    acting, sampling = np.random.default_rng(11), np.random.default_rng(12)

    def images(index):
        return torch.from_numpy(run.images[index]).to(torch_dtype) / 255

    def theirs():
        obs = run.env.observation
        with torch.no_grad():
            values = twin(images([obs]))[0].numpy()
        action = epsilon_greedy(values, c.epsilon, acting)
        reward, next_obs = run.env.step(action)
        run.replay.add(obs, action, reward, next_obs)
        batch = run.replay.sample(c.batch_size, sampling)
        with torch.no_grad():
            y = torch.from_numpy(batch["reward"]).to(torch_dtype) + c.discount * target(
                images(batch["next_observation"])).max(dim=1).values
        q = twin(images(batch["observation"])).gather(1, torch.from_numpy(batch["action"])[:, None])[:, 0]
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(q, y).backward()
        optimizer.step()

    return run.train_step, theirs


def probe_step_pair(arch, dtype, torch_way):
    run = laptop_run(arch, dtype)
    c, rng = run.config, np.random.default_rng(0)
    x = to_float(run.images[:c.probe_examples], np.dtype(dtype))
    targets = rng.normal(size=(E, len(x), run.head.outputs)).astype(dtype)
    ensemble = Ensemble.copies(run.net, E)
    optimizer = Adam(ensemble.flat.reshape(-1), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
    loss, index = make_loss("mse"), rng.integers(0, len(x), size=c.probe_batch_size)
    xb = np.broadcast_to(x[index], (E, len(index), *x.shape[1:]))
    tb = targets[:, index]

    def ours():
        _, grad = ensemble.loss_and_grad(xb, tb, loss)
        optimizer.step(grad.reshape(-1))

    modules = [harness.torch_twin(member) for member in ensemble.members]
    xt, tt = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(tb)
    if torch_way == "vmap":
        params, buffers = torch.func.stack_module_state(modules)
        topt = torch.optim.Adam(params.values(), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)

        def member_loss(p, b, xe, te):
            return torch.nn.functional.mse_loss(torch.func.functional_call(modules[0], (p, b), (xe,)), te)

        grad_of = torch.vmap(torch.func.grad(member_loss))

        def theirs():
            grads = grad_of(params, buffers, xt, tt)
            for name, p in params.items():
                p.grad = grads[name]
            topt.step()
    else:
        topt = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=c.lr, betas=(c.beta1, c.beta2),
                                eps=c.eps)

        def theirs():
            topt.zero_grad()
            for module, xe, te in zip(modules, xt, tt):
                torch.nn.functional.mse_loss(module(xe), te).backward()
            topt.step()

    return ours, theirs


def workloads():
    for arch in ("mlp", "cnn"):
        for dtype in ("float32", "float64"):
            yield (f"laptop {arch} main step", dtype, lambda a=arch, d=dtype: main_step_pair(a, d), args.repeats, 5)
        for way in ("vmap", "loop"):
            yield (f"laptop {arch} probe step, {E} copies, torch {way}", "float32",
                   lambda a=arch, w=way: probe_step_pair(a, "float32", w), args.repeats, 3)


if __name__ == "__main__":
    harness.run(workloads(), args)
