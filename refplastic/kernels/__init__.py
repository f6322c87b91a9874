"""Numba kernels, each beside a naive NumPy twin (``*_naive``) that the tests compare it with."""
