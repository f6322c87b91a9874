"""A replay buffer of single uint8 frames for N sub-environments, restacked when sampled.

An observation is a stack of the last 4 preprocessed 84x84 frames; consecutive observations of
one sub-environment share 3 of them, so the buffer stores each frame once and rebuilds the stacks
when it samples: a slot takes 84 x 84 + 26 = 7,082 bytes, 1M transitions about 7.1 GB (6.6 GiB)
and 100k about 0.71 GB, instead of four times that. Each sub-environment has its own ring of
``capacity // N`` *slots*, written in its own order, so that a ring holds one sub-environment's
consecutive frames. A slot holds

    frame      the newest frame of an observation s_t, (84, 84) uint8
    action     a_t, taken on s_t; reward r_t (clipped), float64; discount d_t, float64: 0 where
               s_{t+1} is terminal or (if the caller says so) a life was lost at t, 1 else
    first      s_t is its episode's first observation
    terminal   the slot is an ended episode's last observation s_T: no action was taken on it; it is
               only ever the s_{t+1} of the slot before

Slot j is a *transition* (s_t, a_t, r_t, d_t, s_{t+1}) once slot j + 1 of its ring is written,
unless it is terminal. The observation of slot j is rebuilt as the environment built it
(:mod:`refplastic.rl.atari`): the frames of slots j-3..j, oldest first, with every frame before its
episode's first one zero, so ``[0, 0, 0, f0]`` for an episode's first observation and
``[0, 0, f0, f1]`` for its second. s_{t+1} is the same at slot j + 1.

*Truncation.* An episode cut by the frame cap is not terminated: its last transition keeps
d = 1 and bootstraps from s_T, the stack of its own terminal slot (the episode's last frames), never
from the next episode's first observation. DQN Zoo's loop also bootstraps at its frame cap.

*Sampling* is uniform with replacement over the sampleable transitions of all rings, drawn with
the caller's Generator: a slot is drawn uniformly among the stored ones and redrawn while it is not
a transition or its stack is incomplete (an oldest slot of a wrapped ring, or of a buffer resumed
mid-episode, whose older frames are gone and whose episode's first frame is not among those kept:
at most 3 per ring). Draws and redraws come from the Generator in order, so a sample is a function
of the buffer and the Generator's state.

*Gathering.* A minibatch is rebuilt by :func:`refplastic.kernels.frame_stacks.frame_stacks`, a
Numba kernel that copies both stacks of each transition in one pass (0.15-0.2 ms for batch 32,
where its NumPy twin takes 1.3-3.5 ms: that module has the measurements).
"""

import numpy as np

from ..kernels.frame_stacks import frame_stacks
from ..memory import available_memory, format_bytes
from .atari import FRAME_SHAPE, STACK

SLOT_FIELDS = {"actions": np.int64, "rewards": np.float64, "discounts": np.float64, "first": np.bool_,
               "terminal": np.bool_}


def replay_bytes(capacity, num_envs, frame_shape=FRAME_SHAPE):
    """The bytes a :class:`FrameReplay` of ``capacity`` slots over ``num_envs`` rings takes:
    ``num_envs * (capacity // num_envs) * (H W + 26)`` (a frame; 8 + 8 + 8 + 1 + 1 bytes of the rest)."""
    per_slot = int(np.prod(frame_shape)) + sum(np.dtype(d).itemsize for d in SLOT_FIELDS.values())
    return int(num_envs) * (int(capacity) // int(num_envs)) * per_slot


def check_replay_memory(capacity, num_envs, frame_shape=FRAME_SHAPE, available=None):
    """A one-line ValueError naming the size if the buffer would not fit in the memory available
    (``available``, default :func:`refplastic.memory.available_memory`; nothing if unknown)."""
    needed = replay_bytes(capacity, num_envs, frame_shape)
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise ValueError(f"replay_capacity {capacity} takes {format_bytes(needed)}, more than the "
                         f"{format_bytes(available)} available; lower replay_capacity")


class FrameReplay:
    """``capacity // num_envs`` slots for each of ``num_envs`` sub-environments: :meth:`add` every
    step, :meth:`add_terminal` when episodes end, :meth:`sample` minibatches."""

    def __init__(self, capacity, num_envs, frame_shape=FRAME_SHAPE, stack=STACK):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < num_envs * (stack + 2):
            raise ValueError(f"replay capacity must be an integer of at least {stack + 2} slots for each of the "
                             f"{num_envs} sub-environments, got {capacity!r}")
        self.num_envs, self.stack, self.frame_shape = int(num_envs), int(stack), tuple(frame_shape)
        self.ring = int(capacity) // self.num_envs
        shape = (self.num_envs, self.ring)
        self.frames = np.zeros(shape + self.frame_shape, np.uint8)
        self.slots = {name: np.zeros(shape, dtype) for name, dtype in SLOT_FIELDS.items()}
        self.count = np.zeros(self.num_envs, np.int64)  # slots ever written in each ring; the next goes to count % ring
        self.transitions = 0  # stored transitions: slots with a successor, not terminal

    def __len__(self):
        """The number of stored transitions (a few of the oldest may not be sampleable: module docstring)."""
        return self.transitions

    @property
    def nbytes(self):
        return self.frames.nbytes + sum(a.nbytes for a in self.slots.values())

    def add(self, frames, actions, rewards, discounts, first):
        """One step of every sub-environment: the newest frame (N, H, W) of each observation s_t acted
        on, the actions a_t, rewards r_t and discount flags d_t, and whether each s_t is its
        episode's first. An s_t must be a first exactly when its ring's newest slot is terminal."""
        envs = np.arange(self.num_envs)
        first = np.asarray(first, bool)
        newest = (self.count - 1) % self.ring
        stored = self.count > 0
        wrong = stored & (first != self.slots["terminal"][envs, newest])
        if wrong.any():
            i = int(np.argmax(wrong))
            raise ValueError(f"replay add: sub-environment {i}'s observation is {'' if first[i] else 'not '}an "
                             f"episode's first, but its last {'did not end' if first[i] else 'ended'} "
                             f"(add_terminal marks an ended episode's last frame)")
        self._write(envs, frames, actions, rewards, discounts, first, False)

    def add_terminal(self, ended, frames):
        """The last frame s_T of each episode that ended (``ended`` (N,) bool; ``frames`` (N, H, W))."""
        envs = np.flatnonzero(ended)
        if len(envs) == 0:
            return
        if (self.count[envs] == 0).any() or self.slots["terminal"][envs, (self.count[envs] - 1) % self.ring].any():
            raise ValueError("replay add_terminal: an episode can only end after an observation acted on (add)")
        self._write(envs, np.asarray(frames)[envs], 0, 0.0, 0.0, False, True)

    def _write(self, envs, frames, actions, rewards, discounts, first, terminal):
        """One slot in the ring of each sub-environment of ``envs``."""
        terminal_slots = self.slots["terminal"]
        position = self.count[envs] % self.ring
        newest = (self.count[envs] - 1) % self.ring
        gains = (self.count[envs] > 0) & ~terminal_slots[envs, newest]          # the newest gets a successor
        loses = (self.count[envs] >= self.ring) & ~terminal_slots[envs, position]  # the oldest is overwritten
        self.transitions += int(gains.sum()) - int(loses.sum())
        self.frames[envs, position] = frames
        for name, value in (("actions", actions), ("rewards", rewards), ("discounts", discounts), ("first", first),
                            ("terminal", terminal)):
            self.slots[name][envs, position] = value
        self.count[envs] += 1

    def sample(self, batch_size, rng):
        """A minibatch of ``batch_size`` transitions drawn uniformly with replacement with ``rng``:
        ``observation`` and ``next_observation`` (B, stack, H, W) uint8, ``action`` (B,) int64,
        ``reward`` and ``discount`` (B,) float64."""
        envs, slots = self._draw(batch_size, rng)
        observation, next_observation = frame_stacks(self.frames, self.slots["first"], envs, slots, self.stack)
        return {"observation": observation, "next_observation": next_observation,
                "action": self.slots["actions"][envs, slots], "reward": self.slots["rewards"][envs, slots],
                "discount": self.slots["discounts"][envs, slots]}

    def _draw(self, batch_size, rng):
        """``(envs, slots)`` (B,) of sampleable transitions, drawn as the module docstring says."""
        stored = np.minimum(self.count, self.ring)
        ends = np.cumsum(stored)
        if not self._can_sample(stored):
            raise ValueError("cannot sample from a replay buffer without a whole transition")
        envs, slots, need = [], [], int(batch_size)
        while need > 0:
            u = rng.integers(0, ends[-1], size=need)
            e = np.searchsorted(ends, u, side="right")
            age = ends[e] - 1 - u  # 0 for a ring's newest slot
            ok = self._sampleable(e, age, stored[e])
            envs.append(e[ok])
            slots.append((self.count[e[ok]] - 1 - age[ok]) % self.ring)
            need -= int(ok.sum())
        return np.concatenate(envs), np.concatenate(slots)

    def _can_sample(self, stored):
        """Whether a sampleable transition exists: surely if there are more transitions than the at
        most stack - 1 of each ring that may lack frames; else by checking every stored slot."""
        if self.transitions > self.num_envs * (self.stack - 1):
            return True
        if self.transitions == 0:
            return False
        envs, age = _stored_slots(stored)
        return bool(self._sampleable(envs, age, stored[envs]).any())

    def _sampleable(self, envs, age, stored):
        """Whether slot ``age`` (0: the newest) of ring ``envs`` is a transition whose stack is
        complete: all of its stack - 1 older slots stored, or its episode's first slot among those that are."""
        slot = (self.count[envs] - 1 - age) % self.ring
        ok = (age >= 1) & ~self.slots["terminal"][envs, slot]
        complete = age + self.stack - 1 < stored
        for back in range(self.stack - 1):
            complete |= (age + back < stored) & self.slots["first"][envs, (slot - back) % self.ring]
        return ok & complete

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self):
        """``frames`` (N, R', H, W), the slot fields (N, R') and ``count`` (N,), R' the slots in use
        (the whole ring once any has wrapped, else the longest ring's written slots)."""
        used = int(min(self.count.max(), self.ring))
        return {"frames": self.frames[:, :used].copy(), **{name: a[:, :used].copy() for name, a in self.slots.items()},
                "count": self.count.copy()}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` gave; a one-line ValueError names a field that does not fit."""
        for name in ("frames", "count", *SLOT_FIELDS):
            if name not in state:
                raise ValueError(f"replay {name} is missing")
        count = np.asarray(state["count"])
        if count.shape != (self.num_envs,) or count.dtype.kind not in "iu" or count.min() < 0:
            raise ValueError(f"replay count must be {self.num_envs} non-negative integers, got {count.dtype}{count.shape}")
        used = int(min(count.max(), self.ring))
        kinds = {"frames": "u", "actions": "iu", "rewards": "f", "discounts": "f", "first": "b", "terminal": "b"}
        arrays = {}
        for name, kind in kinds.items():
            array, shape = np.asarray(state[name]), (self.num_envs, used) + (self.frame_shape if name == "frames" else ())
            if array.shape != shape or array.dtype.kind not in kind or (name == "frames" and array.dtype != np.uint8):
                raise ValueError(f"replay {name}: {array.dtype}{array.shape} in the checkpoint, {shape} of "
                                 f"{np.dtype(SLOT_FIELDS.get(name, np.uint8)).name} expected here")
            arrays[name] = array
        for name in ("rewards", "discounts"):
            if not np.all(np.isfinite(arrays[name])):
                raise ValueError(f"replay {name} contains NaN or infinity")
        if arrays["actions"].size and arrays["actions"].min() < 0:
            raise ValueError("replay actions must be non-negative")
        count = count.astype(np.int64)
        stored = np.minimum(count, self.ring)
        envs, age = _stored_slots(stored)
        envs, slot = envs[age >= 1], (count[envs] - 1 - age)[age >= 1] % self.ring  # the slots with a successor
        follows_end = arrays["terminal"][envs, slot]
        if (arrays["first"][envs, (slot + 1) % self.ring] != follows_end).any():
            raise ValueError("replay first and terminal do not fit: an episode's first slot must follow exactly "
                             "the terminal ones")
        self.frames[:, :used] = arrays["frames"]
        self.frames[:, used:] = 0
        for name, array in self.slots.items():
            array[:, :used] = arrays[name]
            array[:, used:] = 0
        self.count = count
        self.transitions = int((~follows_end).sum())


def _stored_slots(stored):
    """``(envs, age)`` of every stored slot of rings holding ``stored`` (N,) slots, age 0 the newest."""
    envs = np.repeat(np.arange(len(stored)), stored)
    return envs, np.cumsum(stored)[envs] - 1 - np.arange(stored.sum())
