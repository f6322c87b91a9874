"""A replay buffer of transitions whose observations are image indices.

In a classification MDP an observation is an image of a fixed data set, so a transition
``(s, a, r, s')`` is stored as four numbers: the two images' indices, the action and the reward.
The buffer keeps the last ``capacity`` transitions (a ring: the oldest is overwritten first) and
samples minibatches uniformly with replacement, as DQN does (Mnih et al. 2015).
"""

import numpy as np

FIELDS = {"observation": np.int64, "action": np.int64, "reward": np.float64, "next_observation": np.int64}


class Replay:
    """The last ``capacity`` transitions; ``add`` one, ``sample`` index arrays of a minibatch."""

    def __init__(self, capacity):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"replay capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self.arrays = {name: np.zeros(self.capacity, dtype) for name, dtype in FIELDS.items()}
        self.size = 0   # how many transitions are stored
        self.next = 0   # where the next one goes

    def __len__(self):
        return self.size

    def add(self, observation, action, reward, next_observation):
        for name, value in zip(FIELDS, (observation, action, reward, next_observation)):
            self.arrays[name][self.next] = value
        self.next = (self.next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size, rng):
        """``{field: (batch_size,) array}`` of transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = rng.integers(0, self.size, size=batch_size)
        return {name: array[index] for name, array in self.arrays.items()}

    def observations(self):
        """The observations of the stored transitions, oldest first is not guaranteed: (size,)."""
        return self.arrays["observation"][:self.size]

    def state_dict(self):
        return {**{name: array[:self.size].copy() for name, array in self.arrays.items()},
                "next": self.next, "capacity": self.capacity}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` gave; a ValueError names a field that does not fit."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity {int(state['capacity'])} in the checkpoint, {self.capacity} here")
        sizes = {len(np.asarray(state[name])) for name in FIELDS}
        if len(sizes) != 1 or sizes.pop() > self.capacity:
            raise ValueError("replay arrays of different lengths or longer than the capacity")
        size, position = len(np.asarray(state["action"])), int(state["next"])
        if not (0 <= position < self.capacity and (size == self.capacity or position == size % self.capacity)):
            raise ValueError(f"replay position {position} does not fit {size} stored transitions")
        for name, dtype in FIELDS.items():
            self.arrays[name][:size] = np.asarray(state[name], dtype=dtype)
        self.size, self.next = size, position
