"""A replay buffer of single uint8 frames for N environments, restacked when sampled.

An observation is a stack of the last 4 preprocessed 84 x 84 frames; consecutive observations of
one environment share 3 of them, so the buffer stores each frame once (1M transitions in about
7 GB, 100k in 0.7 GB, instead of four times that) and rebuilds stacks when it samples. Each
environment has its own ring of ``capacity // N`` *slots*, written in its own order; a slot holds

    frame     the newest frame of an observation s_t (84 x 84 uint8)
    action    a_t taken on s_t, reward r_t (clipped), discount flag d_t of the transition
              (0 where s_{t+1} is terminal, or a life was lost and lives end bootstrapping; 1 else)
    first     whether s_t is an episode's first observation
    terminal  whether the slot is an ended episode's last observation (no action: it is only
              ever the s_{t+1} of the slot before)

A slot i is a transition (s_t, a_t, r_t, d_t, s_{t+1}) once slot i + 1 is written. Stacks are
rebuilt as the environment builds them (refplastic.rl.atari): the frames of slots i-3..i, where
every frame before an episode's first one is zero, so ``[0, 0, 0, f0]`` right after a reset. An
episode cut by the frame cap (truncation) keeps d = 1: its transition bootstraps from the last
observation, which is stored as a terminal slot; the next episode starts a new stack.

When a ring wraps, the slot overwritten is its oldest; the 3 slots after it lose frames of their
history, so they stop being sampled until they are overwritten in turn (at most 3 transitions of
each ring: a negligible bias). Sampling is uniform with replacement over the sampleable
transitions of all rings, with the run's Generator.
"""

import numpy as np

from ..memory import available_memory, format_bytes
from .atari import FRAME_SHAPE, STACK

FIELDS = {"frames": np.uint8, "actions": np.int64, "rewards": np.float32, "discounts": np.float32,
          "first": np.bool_, "terminal": np.bool_, "sampleable": np.bool_}


def replay_bytes(capacity, frame_shape=FRAME_SHAPE):
    """The bytes a buffer of ``capacity`` slots takes: a frame, 8 + 4 + 4 + 3 bytes of the rest."""
    return int(capacity) * (int(np.prod(frame_shape)) + 19)


def check_replay_memory(capacity, num_envs, frame_shape=FRAME_SHAPE):
    """A ValueError naming the size if the buffer would not fit in the memory available."""
    needed, available = replay_bytes(capacity // num_envs * num_envs, frame_shape), available_memory()
    if available is not None and needed > available:
        raise ValueError(f"a replay buffer of {capacity} transitions takes {format_bytes(needed)}, more than the "
                         f"{format_bytes(available)} available; lower replay_capacity")


def gather_frame_stacks(frames, first, envs, slots, stack):
    """(B, stack, H, W): the stack ending at slot ``slots[b]`` of ring ``envs[b]`` of ``frames``
    (E, R, H, W), walking back from it and zeroing every frame before an episode's first
    (``first`` (E, R)), ring indices modulo R."""
    ring = frames.shape[1]
    out = np.zeros((len(envs), stack) + frames.shape[2:], frames.dtype)
    live = np.ones(len(envs), bool)
    for k in range(stack):
        j = (slots - k) % ring
        out[live, stack - 1 - k] = frames[envs[live], j[live]]
        live &= ~first[envs, j]
    return out


class FrameReplay:
    """``capacity`` slots over ``num_envs`` rings; :meth:`add` each step, :meth:`sample` batches."""

    def __init__(self, capacity, num_envs, frame_shape=FRAME_SHAPE, stack=STACK):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < num_envs * (stack + 2):
            raise ValueError(f"replay capacity must be an integer of at least {stack + 2} slots for each of the "
                             f"{num_envs} environments, got {capacity!r}")
        self.num_envs, self.stack, self.frame_shape = int(num_envs), int(stack), tuple(frame_shape)
        self.ring = int(capacity) // self.num_envs
        self.arrays = {name: np.zeros((self.num_envs, self.ring) + (self.frame_shape if name == "frames" else ()),
                                      dtype) for name, dtype in FIELDS.items()}
        self.count = np.zeros(self.num_envs, np.int64)   # slots written so far in each ring, ever

    def __len__(self):
        """The number of sampleable transitions."""
        return int(self.arrays["sampleable"].sum())

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self.arrays.values())

    def _write(self, envs, frames, actions, rewards, discounts, first, terminal):
        """One slot in the ring of each environment of ``envs``."""
        a = self.arrays
        position = self.count[envs] % self.ring
        previous = (position - 1) % self.ring
        a["sampleable"][envs, position] = False
        # the slot before, the newest so far, becomes a transition if it has an action
        a["sampleable"][envs, previous] = (self.count[envs] >= 1) & ~a["terminal"][envs, previous]
        # a wrapped ring: the slots after the one overwritten lose their history
        wrapped = self.count[envs] >= self.ring
        for k in range(1, self.stack):
            after = (position + k) % self.ring
            a["sampleable"][envs[wrapped], after[wrapped]] = False
        a["frames"][envs, position] = frames
        a["actions"][envs, position] = actions
        a["rewards"][envs, position] = rewards
        a["discounts"][envs, position] = discounts
        a["first"][envs, position] = first
        a["terminal"][envs, position] = terminal
        self.count[envs] += 1

    def add(self, frames, actions, rewards, discounts, first):
        """One step of every environment: the newest frame (N, 84, 84) of each observation acted
        on, the actions, clipped rewards and discount flags of the transitions, and whether each
        observation is an episode's first."""
        envs = np.arange(self.num_envs)
        self._write(envs, frames, actions, rewards, discounts, first, False)

    def add_terminal(self, ended, frames):
        """The last frame of each episode that ended (``ended`` (N,) bool; ``frames`` (N, 84, 84))."""
        envs = np.flatnonzero(ended)
        if len(envs):
            self._write(envs, frames[envs], 0, 0.0, 0.0, False, True)

    def sample(self, batch_size, rng):
        """A minibatch drawn uniformly with replacement: ``observation`` and ``next_observation``
        (B, 4, 84, 84) uint8, ``action``, ``reward``, ``discount`` (B,)."""
        candidates = np.flatnonzero(self.arrays["sampleable"].reshape(-1))
        if len(candidates) == 0:
            raise ValueError("cannot sample from a replay buffer without a whole transition")
        chosen = candidates[rng.integers(0, len(candidates), size=batch_size)]
        envs, slots = np.divmod(chosen, self.ring)
        frames, first = self.arrays["frames"], self.arrays["first"]
        return {"observation": gather_frame_stacks(frames, first, envs, slots, self.stack),
                "next_observation": gather_frame_stacks(frames, first, envs, (slots + 1) % self.ring, self.stack),
                "action": self.arrays["actions"][envs, slots], "reward": self.arrays["rewards"][envs, slots],
                "discount": self.arrays["discounts"][envs, slots]}

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self):
        return {**{name: array for name, array in self.arrays.items()}, "count": self.count.copy()}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` gave; a ValueError names a field that does not fit."""
        for name, dtype in FIELDS.items():
            value = np.asarray(state[name])
            if value.shape != self.arrays[name].shape or value.dtype != dtype:
                raise ValueError(f"replay {name}: {value.dtype}{value.shape} in the checkpoint, "
                                 f"{np.dtype(dtype)}{self.arrays[name].shape} here")
        count = np.asarray(state["count"])
        if count.shape != (self.num_envs,) or (count < 0).any():
            raise ValueError(f"replay count: {count!r} does not fit {self.num_envs} rings")
        for name in FIELDS:
            self.arrays[name][...] = state[name]
        self.count = count.astype(np.int64)
