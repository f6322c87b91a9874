"""The threaded kernels: any split of the outer loop gives the same bits as one serial call; the
thread pool works after fork(); ReLU's fused kernels equal their NumPy twins."""

import multiprocessing
import os

import numpy as np
import pytest

from refplastic.kernels import threads
from refplastic.kernels.im2col import col2im, im2col
from refplastic.kernels.optim import adam_step, rmsprop_step, sgd_step
from refplastic.kernels.relu import relu, relu_backward, relu_backward_naive, relu_naive
from refplastic.kernels.space_to_depth import depth_to_space, shift_add, shift_scatter, space_to_depth


@pytest.fixture
def thread_count():
    """Set the thread count for a test (and a tiny MIN_CHUNK so that small calls split); restore after."""
    saved = threads.num_threads(), threads.MIN_CHUNK

    def use(n, min_chunk=1):
        threads.set_num_threads(n)
        threads.MIN_CHUNK = min_chunk

    yield use
    threads.set_num_threads(saved[0])
    threads.MIN_CHUNK = saved[1]


@pytest.mark.parametrize("n,work,count,min_chunk", [(10, 1, 3, 1), (7, 5, 4, 1), (2, 1, 5, 1), (0, 1, 3, 1),
                                                    (100, 10, 4, 300), (100, 1, 4, 1000)])
def test_chunks_cover_the_range_in_order(thread_count, n, work, count, min_chunk):
    thread_count(count, min_chunk)
    parts = threads.chunks(n, work)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert len(parts) <= max(1, min(count, n))
    assert len(parts) == 1 or all((stop - start) * work >= min_chunk for start, stop in parts)


def test_set_num_threads_rejects_bad_counts():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive int"):
            threads.set_num_threads(bad)


def _threaded_calls(rng, dtype):
    """``name -> zero-argument call`` of every threaded kernel on fresh random inputs."""
    x = rng.normal(size=(2, 3, 4, 17, 13)).astype(dtype)
    z = rng.normal(size=(2, 4 * 5, 3 * 6 * 5)).astype(dtype)  # (G, mh mw O, n Bh Bw) for multiple (2, 2)
    gy = rng.normal(size=(2, 3, 5, 5, 4)).astype(dtype)
    cols = rng.normal(size=(2, 4 * 9, 3 * 7 * 5)).astype(dtype)
    s = rng.normal(size=(2, 4 * 6, 3 * 5 * 4)).astype(dtype)  # stride (2, 3), blocks (5, 4)
    return {
        "space_to_depth": lambda: space_to_depth(x, (2, 3), (8, 4)),
        "depth_to_space": lambda: depth_to_space(s, (2, 3, 4, 17, 13), (2, 3), (5, 4)),
        "shift_add": lambda: shift_add(z, 3, (5, 4), (2, 2), rng.normal(size=(2, 5)).astype(dtype)),
        "shift_scatter": lambda: shift_scatter(gy, (2, 3)),
        "im2col": lambda: im2col(x, (3, 3), (2, 2), (1, 0)),
        "col2im": lambda: col2im(cols, (2, 3, 4, 15, 11), (3, 3), (2, 2), (0, 0)),
        "relu": lambda: relu(x),
        "relu_backward": lambda: relu_backward(x, 2 * x + 1),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count", [2, 3, 7])
def test_rearrangements_are_the_same_on_any_number_of_threads(thread_count, count, dtype):
    thread_count(1, 1 << 30)
    serial = {name: call() for name, call in _threaded_calls(np.random.default_rng(0), dtype).items()}
    thread_count(count)
    for name, call in _threaded_calls(np.random.default_rng(0), dtype).items():
        np.testing.assert_array_equal(call(), serial[name], err_msg=name)


def _optimizer_runs(dtype):
    """Three optimizer steps of each kernel on the same start; returns every final array."""
    rng = np.random.default_rng(1)
    size = 1001
    out = {}
    for name in ("sgd", "adam", "rmsprop"):
        p = rng.normal(size=size).astype(dtype)
        bufs = [np.abs(rng.normal(size=size)).astype(dtype) + 0.5 for _ in range(3)]
        for step in range(1, 4):
            g = rng.normal(size=size).astype(dtype)
            if name == "sgd":
                sgd_step(p, g, bufs[0], step, 0.1, 0.9, 0.1, 0.01, True)
            elif name == "adam":
                adam_step(p, g, bufs[0], bufs[1], bufs[2], step, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, True)
            else:
                rmsprop_step(p, g, bufs[0], bufs[1], bufs[2], 1e-2, 0.99, 1e-8, 0.01, 0.9, True)
        out[name] = [p, *bufs]
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizer_kernels_are_the_same_on_any_number_of_threads(thread_count, dtype):
    thread_count(1, 1 << 30)
    serial = _optimizer_runs(dtype)
    thread_count(3)
    for name, arrays in _optimizer_runs(dtype).items():
        for a, b in zip(arrays, serial[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def _relu_in_child(queue):
    x = np.linspace(-1.0, 1.0, 1 << 12)
    queue.put(bool(np.array_equal(relu(x), np.maximum(x, 0))))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_threads_work_in_a_forked_child(thread_count):
    thread_count(2)
    relu(np.ones(1 << 12))  # start the pool in the parent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_relu_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) is True


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_kernels_match_naive_including_special_values(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5, 7)).astype(dtype)
    x.flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
    gy = rng.normal(size=x.shape).astype(dtype)
    gy.flat[6:9] = [np.nan, np.inf, -np.inf]
    np.testing.assert_array_equal(relu(x), relu_naive(x))
    assert relu(x).dtype == dtype
    np.testing.assert_array_equal(relu_backward(x, gy), relu_backward_naive(x, gy))
    xt = x.transpose(2, 0, 1)  # non-contiguous input
    np.testing.assert_array_equal(relu(xt), relu_naive(xt))
    np.testing.assert_array_equal(relu_backward(xt, gy.transpose(2, 0, 1)), relu_backward_naive(xt, gy.transpose(2, 0, 1)))
    with pytest.raises(ValueError, match="same shape"):
        relu_backward(x, gy[0])
