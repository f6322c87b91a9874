"""The classification MDPs of Lyle et al. (2023, section 3.2): image classification as a block MDP.

Ten latent states ``s in {0, ..., 9}``, ten actions; in state s the agent observes an image drawn
uniformly from the images of *observation label* s, and acting with action a gives:

    true-label ("easy")     observation label = the image's class;  r = [a = s];
                            next state uniform on {0..9}
    random-label ("hard")   observation label = a random label fixed once per image (uniform
                            on {0..9}, drawn from the task's generator); r = [a = s];
                            next state uniform on {0..9}
    sparse                  observation label = the image's class;  r = [a = s = 9];
                            next state s + 1 if a = s (and 0 after 9), else uniform on {0..9}

The paper says "otherwise to s + 1" without saying where 9 goes; this implementation wraps to 0
(a stated choice, docs/protocol.md). There are no terminal states: the task is continuing and
discounted. In the easy and hard tasks the dynamics do not depend on the action, so the state
visitation distribution is fixed and only the bootstrap target moves.

An observation is identified by its image's index in the data set, so that a replay buffer stores
integers and the pixels are looked up when a batch is built. Randomness: one
``numpy.random.Generator`` for the random labels (at construction) and one for the dynamics.
"""

import numpy as np

TASKS = ("easy", "hard", "sparse")
NUM_STATES = NUM_ACTIONS = 10


def observation_labels(task, labels, rng):
    """The label each image is observed under: its class (easy, sparse; classes must be 0..9) or a
    fixed random label in 0..9 drawn for each image from ``rng`` (hard)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    labels = np.asarray(labels, dtype=np.int64)
    if task == "hard":
        return rng.integers(0, NUM_STATES, size=len(labels))
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_STATES:
        raise ValueError(f"the {task} task needs class labels in 0..{NUM_STATES - 1}")
    return labels


def reward(task, state, action):
    """``[a = s]`` for easy and hard, ``[a = s = 9]`` for sparse (floats, elementwise)."""
    state, action = np.asarray(state), np.asarray(action)
    if task == "sparse":
        return ((action == state) & (state == NUM_STATES - 1)).astype(np.float64)
    return (action == state).astype(np.float64)


class ClassificationMDP:
    """One environment of ``task`` over images with integer ``labels`` (the data set's classes).

    ``state`` is the latent state and ``observation`` the index of the image shown in it.
    ``step(action)`` returns ``(reward, next observation)``. Every image label 0..9 must have at
    least one image.
    """

    def __init__(self, task, labels, label_rng, rng):
        self.task = task
        self.labels = observation_labels(task, labels, label_rng)
        self.images_of = [np.flatnonzero(self.labels == s) for s in range(NUM_STATES)]
        empty = [s for s, images in enumerate(self.images_of) if len(images) == 0]
        if empty:
            raise ValueError(f"the {task} task needs images of every label 0..9; none of label(s) {empty}")
        self.rng = rng
        self.state = int(rng.integers(NUM_STATES))
        self.observation = self._observe(self.state)

    def _observe(self, state):
        """A uniformly drawn image of observation label ``state``."""
        images = self.images_of[state]
        return int(images[self.rng.integers(len(images))])

    def next_state(self, action):
        """The next latent state after ``action`` in the current state (draws from the generator)."""
        if self.task == "sparse" and action == self.state:
            return (self.state + 1) % NUM_STATES
        return int(self.rng.integers(NUM_STATES))

    def step(self, action):
        """Act: ``(reward, next observation)``, and move to the next state."""
        r = float(reward(self.task, self.state, action))
        self.state = self.next_state(int(action))
        self.observation = self._observe(self.state)
        return r, self.observation

    def state_dict(self):
        """``{"state", "observation"}`` (the generator's state is saved by the run)."""
        return {"state": self.state, "observation": self.observation}

    def load_state_dict(self, values):
        state, observation = int(values["state"]), int(values["observation"])
        if not (0 <= state < NUM_STATES and 0 <= observation < len(self.labels)
                and self.labels[observation] == state):
            raise ValueError(f"environment state {state} with observation {observation} does not fit the task")
        self.state, self.observation = state, observation
