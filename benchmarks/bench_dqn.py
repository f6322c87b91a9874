"""The whole Double DQN loop, refplastic and torch side by side, in one process: agent steps per second.

One *vector step* of the loop of refplastic.rl.run: the Q-values of the N current observations
(the Nature CNN, batch N), epsilon-greedy actions, one step of the N Atari environments
(ale-py's AtariVectorEnv), the transitions into the frame replay buffer, and, every
``update_period`` frames, one Double DQN learner step on a replayed batch of 32. The two loops
share the environments' code and the replay buffer (both NumPy) and differ only in the network
and the learner step: refplastic's (refplastic.rl.learner) or the same written in torch
(torch.optim.Adam, smooth_l1_loss = Huber with delta 1, as the laptop preset). Each loop has its own
environments and buffer, built from the same seed and first filled with ``--prefill`` random
steps, so that every timed step learns.

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

from refplastic.nn import Network, make_loss, make_optimizer  # noqa: E402
from refplastic.rl.config import preset  # noqa: E402
from refplastic.rl.frame_replay import FrameReplay  # noqa: E402
from refplastic.rl.learner import learner_step  # noqa: E402
from refplastic.rl.nature_cnn import nature_cnn, scaled_frames  # noqa: E402
from refplastic.rl.run import epsilon_greedy, make_environments  # noqa: E402

CONFIG = preset("laptop", game=args.game, num_envs=args.num_envs, update_period=args.update_period,
                env_threads=args.env_threads, learning_starts=args.num_envs * 4 * max(1, args.prefill // args.num_envs))
EPSILON, BATCH, GAMMA = 0.1, CONFIG.batch_size, CONFIG.discount


class Loop:
    """The environments, replay buffer and rngs of one loop; ``q_values`` and ``learn`` are the
    network's (refplastic's or torch's)."""

    def __init__(self, q_values, learn):
        self.q_values, self.learn = q_values, learn
        self.rng = np.random.default_rng(0)
        self.envs = make_environments(CONFIG, CONFIG.num_envs, np.random.default_rng(1))
        self.replay = FrameReplay(100_000, CONFIG.num_envs)
        self.observation = self.envs.reset()
        self.frame = 0
        for _ in range(args.prefill // CONFIG.num_envs):
            self.step(random=True)

    def step(self, random=False):
        n = CONFIG.num_envs
        values = np.zeros((n, self.envs.num_actions)) if random else self.q_values(self.observation)
        actions = epsilon_greedy(values, 1.0 if random else EPSILON, self.rng)
        first = self.envs.first.copy()
        step = self.envs.step(actions)
        rewards = np.clip(step.rewards, -1, 1)
        discounts = np.where(step.terminated | step.life_lost, 0.0, 1.0)
        self.replay.add(self.observation[:, -1], actions, rewards, discounts, first)
        self.replay.add_terminal(step.ended, step.final_frames)
        self.observation = step.observations
        before, self.frame = self.frame, self.frame + n * CONFIG.frameskip
        if not random:
            for _ in range(self.frame // CONFIG.update_period - before // CONFIG.update_period):
                self.learn(self.replay.sample(BATCH, self.rng))


def refplastic_loop():
    loop = Loop(None, None)
    net = Network.from_architecture(nature_cnn(loop.envs.num_actions, args.layernorm), np.random.default_rng(0),
                                    np.float32)
    target = net.copy()
    optimizer, loss = make_optimizer("adam", net.flat, lr=1e-4), make_loss("huber")
    loop.q_values = lambda obs: net.forward(scaled_frames(obs, np.float32))
    loop.learn = lambda batch: learner_step(net, target, optimizer, loss, batch, GAMMA, double_q=True)
    loop.parts = net, target
    return loop


def torch_loop(net, target):
    module, target_module = harness.torch_twin(net), harness.torch_twin(target)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    @torch.no_grad()
    def q_values(obs):
        return module(torch.from_numpy(obs).float() / 255).numpy()

    def learn(batch):
        x, next_x = torch.from_numpy(batch["observation"]), torch.from_numpy(batch["next_observation"])
        with torch.no_grad():
            s_next = next_x.float() / 255
            chosen = module(s_next).argmax(dim=1, keepdim=True)
            discounts = torch.from_numpy(np.asarray(batch["discount"], np.float32))
            rewards = torch.from_numpy(np.asarray(batch["reward"], np.float32))
            y = rewards + GAMMA * discounts * target_module(s_next).gather(1, chosen)[:, 0]
        q = module(x.float() / 255).gather(1, torch.from_numpy(np.asarray(batch["action"]))[:, None])[:, 0]
        loss = torch.nn.functional.smooth_l1_loss(q, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return Loop(q_values, learn)


def agent_steps_per_second(loop):
    harness.settle()
    start = time.perf_counter()
    for _ in range(args.steps):
        loop.step()
    return args.steps * CONFIG.num_envs / (time.perf_counter() - start)


def main():
    ours = refplastic_loop()
    theirs = torch_loop(*ours.parts)
    for loop in (ours, theirs):  # warm up: compile, allocate
        for _ in range(10):
            loop.step()
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
