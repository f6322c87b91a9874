"""Reading a pickle from anyone: plain data and uint8 arrays only; nothing in the file is called.

``pickle.load`` calls whatever the file names: a GLOBAL opcode names any attribute of any module
(``os.system``, ``builtins.exec``) and REDUCE calls it with arguments from the file. Here
``find_class`` gives no name its real object. Plain data (dicts, lists, tuples, sets, str, bytes,
int, float, bool, None) names no global and loads as usual. The only names accepted are the three
that a pickled NumPy array names, as in the real CIFAR-10 python batches (Python 2, protocol 2):

    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")  then BUILD
        (1, shape, numpy.dtype("u1", 0, 1) BUILD (3, "|", None, None, None, -1, -1, 0), False, raw bytes)

(``numpy._core.multiarray._reconstruct`` and the arguments ``("u1", False, True)`` when NumPy 2
wrote the file with protocol 3 or 4). Each name resolves to a stand-in of this module that checks
its arguments are exactly these (a C-order uint8 array, whose raw bytes are ``prod(shape)`` long)
and records them; no NumPy code runs while the file is read, and :meth:`PickledArray.to_numpy`
makes the array from the checked bytes afterwards. Any other global, another dtype (object
arrays hold pickled objects), protocol 5's out-of-band buffers, or a persistent id is refused.
"""

import math
import pickle

import numpy as np

ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                 ("numpy", "ndarray"), ("numpy", "dtype")}
UINT8_DTYPE_STATE = (3, "|", None, None, None, -1, -1, 0)


def load_restricted(path):
    """The object pickled in ``path``, read by :class:`RestrictedUnpickler` with Python 2 strings as
    bytes (``encoding="bytes"``); a one-line ValueError naming the file for anything refused or broken."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except OSError:
        raise
    except Exception as e:  # whatever a broken or hostile file raises, as one line
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not unpickled: {reason[:200]}{'...' if len(reason) > 200 else ''}") from None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global but the stand-ins of a uint8 NumPy array."""

    def find_class(self, module, name):
        if (module, name) not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, refused: only plain data and uint8 "
                                         f"NumPy arrays are read from a pickle")
        return STAND_INS[name]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id, refused")


class _StandIn:
    """What an accepted global resolves to: an object without state, on which BUILD is refused
    (BUILD sets attributes, and a stand-in is shared by every load)."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"BUILD on {self!r}, refused")

    def __repr__(self):
        return f"{type(self).__name__.lstrip('_')} (stand-in)"


class _Ndarray(_StandIn):
    """``numpy.ndarray``: accepted only as ``_reconstruct``'s first argument."""

    __slots__ = ()


class _Reconstruct(_StandIn):
    """``numpy.core.multiarray._reconstruct``: ``(ndarray, (0,), b"b")`` makes an empty
    :class:`PickledArray`."""

    __slots__ = ()

    def __call__(self, subtype, shape, typecode):
        if not isinstance(subtype, _Ndarray) or shape != (0,) or _text(typecode) != "b":
            raise pickle.UnpicklingError(f"_reconstruct{(subtype, shape, typecode)!r} is not a plain "
                                         f"array's, refused")
        return PickledArray()


class _Dtype(_StandIn):
    """``numpy.dtype``: ``("u1", 0, 1)`` (or ``False, True``) makes a :class:`PickledUint8`."""

    __slots__ = ()

    def __call__(self, spec, align=False, copy=True):
        if _text(spec) != "u1" or type(align) not in (int, bool) or type(copy) not in (int, bool) \
                or (align, copy) != (0, 1):
            raise pickle.UnpicklingError(f"dtype{(spec, align, copy)!r} is not uint8, refused")
        return PickledUint8()


STAND_INS = {"ndarray": _Ndarray(), "_reconstruct": _Reconstruct(), "dtype": _Dtype()}


class PickledUint8:
    """A pickled ``numpy.dtype("u1")``; BUILD may give it uint8's state and nothing else."""

    def __setstate__(self, state):
        if _text(state) != UINT8_DTYPE_STATE:
            raise pickle.UnpicklingError(f"dtype state {state!r} is not uint8's, refused")


class PickledArray:
    """A pickled array; BUILD gives it the shape and the raw bytes of a C-order uint8 array, which
    :meth:`to_numpy` turns into the array."""

    shape = raw = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("array state is not (version, shape, dtype, fortran, data), refused")
        version, shape, dtype, fortran, raw = state
        if version != 1 or not isinstance(dtype, PickledUint8) or fortran not in (0, False):
            raise pickle.UnpicklingError("array state is not that of a C-order uint8 array, refused")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of sizes, refused")
        if not isinstance(raw, bytes) or len(raw) != math.prod(shape):
            raise pickle.UnpicklingError(f"array data is not {math.prod(shape)} bytes for shape {shape}")
        self.shape, self.raw = shape, raw

    def to_numpy(self):
        if self.raw is None:
            raise ValueError("a pickled array without its data")
        return np.frombuffer(self.raw, np.uint8).reshape(self.shape).copy()


def _text(value):
    """``value`` with bytes (Python 2 strings read as bytes) decoded, inside tuples too."""
    if isinstance(value, tuple):
        return tuple(_text(v) for v in value)
    return value.decode("latin-1") if isinstance(value, bytes) else value
