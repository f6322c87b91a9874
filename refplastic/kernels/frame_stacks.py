"""Observation stacks rebuilt from rings of single frames: the gather of a replay minibatch.

For rings ``frames`` (E, R, H, W) holding each sub-environment's consecutive frames, ``first``
(E, R) marking the slots where an episode begins, and B transitions at slot ``j = slots[b]`` of
ring ``e = envs[b]``, stacks of S frames oldest first:

    observation[b, c]      = frames[e, (j - (S-1-c)) mod R]       c = 0..S-1
    next_observation[b, c] = frames[e, (j + 1 - (S-1-c)) mod R]

except that a frame older than an episode's first frame in the same stack is 0 (walking back from
the newest frame, every frame after the first one met with ``first`` set): ale-py's own stacks
after a reset, ``[0, 0, 0, f0]``, ``[0, 0, f0, f1]``, ...

:func:`frame_stacks` fills both stacks in one pass over the B transitions (Numba, frames flattened
so that each copy is one vectorised loop); :func:`frame_stacks_naive` is its NumPy twin: one
fancy-indexed gather of the S + 1 frames of each transition, the zeros set through a mask, and a
copy into each output. Measured for batch 32 of 4 x 84 x 84 stacks drawn at random from a
100k-slot buffer (``python -m refplastic.kernels.frame_stacks [--keep-memory]``; the project's
2-core EPYC, other jobs running): with freed memory kept in the process
(:func:`refplastic.malloc.keep_freed_memory`) the kernel takes 0.15-0.20 ms and the twin 1.3-1.9
ms, its temporaries (five frames per transition, masked copies, casts) costing more than the copy
itself; without, both pay about 0.7 ms more for faulting in the outputs' fresh pages (0.9 and
3.4-3.5 ms). The kernel saves 1.2-2.6 ms a minibatch, a few percent of a Nature CNN learner step
at batch 32 (float32: 105 ms measured beside the same jobs, tens of milliseconds on an idle
machine), so the replay samples through it.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _stack_into(frames, first, e, newest, out):
    """``out`` (S, P) <- the stack whose newest frame is slot ``newest`` of ring ``e`` of ``frames``
    (E, R, P), frames flattened to P pixels."""
    ring, pixels = frames.shape[1], frames.shape[2]
    blank = False
    for c in range(out.shape[0] - 1, -1, -1):
        slot = (newest - (out.shape[0] - 1 - c)) % ring
        if blank:
            for p in range(pixels):
                out[c, p] = 0
        else:
            source = frames[e, slot]
            for p in range(pixels):
                out[c, p] = source[p]
            blank = first[e, slot]


@njit(cache=True)
def _frame_stacks(frames, first, envs, slots, observation, next_observation):
    for b in range(len(envs)):
        _stack_into(frames, first, envs[b], slots[b], observation[b])
        _stack_into(frames, first, envs[b], slots[b] + 1, next_observation[b])


def frame_stacks(frames, first, envs, slots, stack):
    """``(observation, next_observation)``, each (B, stack, H, W) of ``frames``' dtype, of the B
    transitions at slots ``slots`` of rings ``envs`` (module docstring); ``frames`` C-contiguous."""
    rings, ring = frames.shape[:2]
    shape = (len(envs), stack, int(np.prod(frames.shape[2:])))
    observation, next_observation = np.empty(shape, frames.dtype), np.empty(shape, frames.dtype)
    _frame_stacks(frames.reshape(rings, ring, -1), first, np.asarray(envs, np.int64), np.asarray(slots, np.int64),
                  observation, next_observation)
    full = (len(envs), stack) + frames.shape[2:]
    return observation.reshape(full), next_observation.reshape(full)


def frame_stacks_naive(frames, first, envs, slots, stack):
    """NumPy twin of :func:`frame_stacks`."""
    window = (np.asarray(slots)[:, None] + np.arange(-(stack - 1), 2)) % frames.shape[1]  # (B, S + 1), oldest first
    e = np.asarray(envs)[:, None]
    gathered = frames[e, window]
    starts = first[e, window]
    stacks = []
    for columns in (slice(0, stack), slice(1, stack + 1)):
        begun = starts[:, columns]
        # a frame is blank if a later one in its stack is an episode's first: a reversed running OR, shifted by one
        later = np.logical_or.accumulate(begun[:, ::-1], axis=1)[:, ::-1]
        blank = np.concatenate([later[:, 1:], np.zeros((len(begun), 1), bool)], axis=1)
        stacks.append(np.where(blank[:, :, None, None], 0, gathered[:, columns]).astype(frames.dtype))
    return tuple(stacks)


def _measure(batch=32, ring=25_000, rings=4, repeats=500):
    """Mean seconds of each function on random slots of a (rings, ring, 84, 84) buffer, after
    warming up (the first calls also pay for the outputs' fresh pages)."""
    import time

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(rings, ring, 84, 84), dtype=np.uint8)
    first = rng.random((rings, ring)) < 0.01
    times = {}
    for function in (frame_stacks, frame_stacks_naive):
        for _ in range(50):
            function(frames, first, rng.integers(0, rings, batch), rng.integers(0, ring, batch), 4)
        started = time.perf_counter()
        for _ in range(repeats):
            function(frames, first, rng.integers(0, rings, batch), rng.integers(0, ring, batch), 4)
        times[function.__name__] = (time.perf_counter() - started) / repeats
    return times


if __name__ == "__main__":
    import sys

    from ..malloc import keep_freed_memory

    if "--keep-memory" in sys.argv:
        keep_freed_memory()
    for name, seconds in _measure().items():
        print(f"{name}: {seconds * 1e3:.3f} ms for a batch of 32")
