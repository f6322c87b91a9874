"""refplastic: an exact, auditable NumPy/Numba reference for studying loss of plasticity.

After Lyle, Zheng, Nikishin, Avila Pires, Pascanu and Dabney, "Understanding plasticity in neural
networks" (ICML 2023). float64 is the reference dtype; every random draw comes from an explicit
``numpy.random.Generator``.
"""

__version__ = "0.1.0"
