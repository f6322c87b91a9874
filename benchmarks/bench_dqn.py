"""The whole Double DQN loop, refplastic and torch side by side, in one process: agent steps per second.

One *vector step* of the loop of refplastic.rl.run (``DQNRun.vector_step`` itself): the
Q-values of the N current observations (the Nature CNN, batch N), epsilon-greedy actions, one
step of the N Atari environments (ale-py's AtariVectorEnv), the transitions into the frame replay
buffer, and, every ``update_period`` frames, one Double DQN learner step on a replayed batch of
32. The two loops share that code and differ only in the three methods where the loop meets the
network: refplastic's (``q_values``, ``learn``: refplastic.rl.learner, ``copy_target``) or
:class:`TorchRun`'s, the same written in torch (torch.optim.Adam, smooth_l1_loss = Huber with
delta 1, as the laptop preset). Each run has its own environments and buffer, built from the same
seed and first filled with ``--prefill`` agent steps before learning starts, so that every timed
step learns.

Timing: rounds alternate between the two loops; a round is ``--steps`` vector steps after a pause
(benchmarks/harness.py's settle); a cell is the median over rounds of agent steps per second
(vector steps x N / seconds); the ratio is torch's rate over refplastic's, i.e. refplastic's time
over torch's, as in the other benchmarks (below 1: refplastic faster).

    python benchmarks/bench_dqn.py [--threads 2] [--repeats 5] [--game pong] [--num-envs 4]
                                   [--update-period 16] [--layernorm] [--steps 150]
"""

import time
from statistics import median

import harness

args = harness.parse_args(__doc__.split("\n")[0], [
    (("--game",), dict(default="pong")),
    (("--num-envs",), dict(type=int, default=4)),
    (("--env-threads",), dict(type=int, default=1, help="ALE's threads for the environments")),
    (("--update-period",), dict(type=int, default=16, help="frames between learner steps (16: every 4 agent steps)")),
    (("--layernorm",), dict(action="store_true")),
    (("--steps",), dict(type=int, default=150, help="vector steps per round")),
    (("--prefill",), dict(type=int, default=2000, help="random agent steps before timing")),
])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.rl.config import preset  # noqa: E402
from refplastic.rl.run import DQNRun  # noqa: E402

PREFILL_FRAMES = args.num_envs * 4 * max(1, args.prefill // args.num_envs)
CONFIG = preset("laptop", game=args.game, num_envs=args.num_envs, update_period=args.update_period,
                env_threads=args.env_threads, layernorm=args.layernorm, learning_starts=PREFILL_FRAMES,
                dtype="float32")


class TorchRun(DQNRun):
    """refplastic's loop (environments, replay, schedules: DQNRun.vector_step) with the network,
    the Double DQN learner step and the target copy written in torch; the networks start from the
    refplastic run's weights (torch.optim.Adam, smooth_l1_loss = Huber with delta 1, as the laptop
    preset)."""

    def __init__(self, config, like):
        super().__init__(config)
        self.module, self.target_module = harness.torch_twin(like.net), harness.torch_twin(like.target)
        self.torch_optimizer = torch.optim.Adam(self.module.parameters(), lr=config.lr, eps=config.eps)

    @torch.no_grad()
    def q_values(self, observation):
        return self.module(torch.from_numpy(observation).float() / 255).numpy()

    def learn(self, batch):
        x, next_x = torch.from_numpy(batch["observation"]), torch.from_numpy(batch["next_observation"])
        with torch.no_grad():
            s_next = next_x.float() / 255
            chosen = self.module(s_next).argmax(dim=1, keepdim=True)
            discounts = torch.from_numpy(np.asarray(batch["discount"], np.float32))
            rewards = torch.from_numpy(np.asarray(batch["reward"], np.float32))
            y = rewards + self.config.discount * discounts * self.target_module(s_next).gather(1, chosen)[:, 0]
        q = self.module(x.float() / 255).gather(1, torch.from_numpy(np.asarray(batch["action"]))[:, None])[:, 0]
        loss = torch.nn.functional.smooth_l1_loss(q, y)
        self.torch_optimizer.zero_grad()
        loss.backward()
        self.torch_optimizer.step()
        return float(loss), float(q.detach().mean())

    def copy_target(self):
        self.target_module.load_state_dict(self.module.state_dict())


def prefilled(run):
    """``run`` after ``--prefill`` agent steps, so that every timed step learns."""
    while run.frame < PREFILL_FRAMES:
        run.vector_step()
    return run


def agent_steps_per_second(run):
    harness.settle()
    start = time.perf_counter()
    for _ in range(args.steps):
        run.vector_step()
    return args.steps * CONFIG.num_envs / (time.perf_counter() - start)


def main():
    ours = DQNRun(CONFIG)
    theirs = prefilled(TorchRun(CONFIG, ours))
    prefilled(ours)
    for run in (ours, theirs):  # warm up: compile, allocate
        for _ in range(10):
            run.vector_step()
    a, b = [], []
    for _ in range(args.repeats):
        a.append(agent_steps_per_second(ours))
        if not args.alone:
            b.append(agent_steps_per_second(theirs))
        print(f"  round: refplastic {a[-1]:7.1f}  torch {b[-1] if b else float('nan'):7.1f} agent steps/s", flush=True)
    ratios = [y / x for x, y in zip(a, b)]
    name = f"Double DQN loop, {args.game}, {CONFIG.num_envs} envs, update every {CONFIG.update_period} frames" + \
        (", LayerNorm" if args.layernorm else "")
    ratio = median(b) / median(a) if b else float("nan")
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
    if args.markdown:
        print("| workload | refplastic (agent steps/s) | torch (agent steps/s) | ratio refplastic/torch time | rounds |")
        print("|---|---:|---:|---:|---:|")
        print(f"| {name} | {median(a):.1f} | {median(b) if b else float('nan'):.1f} | {ratio:.2f} | {spread} |")
    else:
        print(f"{name}: refplastic {median(a):.1f}, torch {median(b) if b else float('nan'):.1f} agent steps/s; "
              f"ratio (time) {ratio:.2f}, rounds {spread}")
    print(f"threads={args.threads}, torch {torch.__version__}, numpy {np.__version__}")


main()
