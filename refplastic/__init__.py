"""refplastic: an exact, auditable NumPy/Numba reference for studying loss of plasticity.

After Lyle, Zheng, Nikishin, Avila Pires, Pascanu and Dabney, "Understanding plasticity in neural
networks" (ICML 2023). float64 is the reference dtype; every random draw comes from an explicit
``numpy.random.Generator``.
"""

import os

__version__ = "0.1.0"

# After each matrix product OpenBLAS's worker threads spin for about 0.1 s (2^28 cycles) waiting for
# the next one, and a spinning worker takes its core from refplastic's own kernel threads
# (refplastic.kernels.threads), which then run no faster than one thread. With a timeout of 2^4
# cycles the workers sleep at once; waking them costs microseconds a product. OpenBLAS reads the
# variable when NumPy loads, so this takes effect when refplastic is imported before NumPy (as the
# refplastic command does); a value already set is kept. docs/performance.md has the measurements.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
