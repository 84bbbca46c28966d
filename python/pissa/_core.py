"""Handles with deterministic release, and the conversion of Python arrays to and from C buffers.

Arrays: with numpy importable, inputs are numpy arrays passed by pointer (no copy) and outputs are numpy arrays
allocated here and filled by C. Without numpy, inputs may be nested lists, array.array, bytes, memoryview or
pissa.Array, and outputs are pissa.Array (a flat float32/int32 buffer plus a shape). Wrong dtypes raise TypeError,
wrong shapes and non-contiguous arrays ValueError, before any C call.
"""
import array as _array
import ctypes
import weakref
from ctypes import POINTER, c_float, c_int32

try:  # a missing numpy, or sys.modules["numpy"] = None, selects the standard-library path
    import numpy as np
except ImportError:
    np = None


def numpy_available():
    return np is not None


# ---- handles ----


class _State:
    """The C object behind a handle, freed once its owner is closed (or collected) AND no dependant uses it.

    Dependants (a Trainer of a Model, an array viewing a Model's memory) acquire the state, so closing the owner
    while one of them lives only marks it closed: the memory goes when the last dependant does. A state holds no
    reference to its Python owner, so weakref.finalize can own it."""

    __slots__ = ("ptr", "free", "parents", "users", "owner_gone")

    def __init__(self, ptr, free, parents):
        self.ptr, self.free, self.parents, self.users, self.owner_gone = ptr, free, tuple(parents), 0, False
        for p in self.parents:
            p.users += 1

    def drop_owner(self):
        self.owner_gone = True
        self._maybe_free()

    def acquire(self):
        self.users += 1

    def release(self):
        self.users -= 1
        self._maybe_free()

    def _maybe_free(self):
        if self.owner_gone and self.users == 0 and self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self.free(ptr)
            parents, self.parents = self.parents, ()
            for p in parents:
                p.release()


class Handle:
    """Base of every object owning a libpissa handle: close(), context manager, freed by the garbage collector."""

    _kind = "handle"

    def _init_handle(self, ptr, free, parents=()):
        self._state = _State(ptr, free, [p._state for p in parents])
        self._finalizer = weakref.finalize(self, self._state.drop_owner)

    @property
    def _h(self):
        st = getattr(self, "_state", None)
        if st is None or st.owner_gone:
            raise ValueError(f"{self._kind} is closed")
        return st.ptr

    @property
    def closed(self):
        st = getattr(self, "_state", None)
        return st is None or st.owner_gone

    def close(self):
        """Releases the C object now (or, if a dependant still uses it, as soon as the last one goes)."""
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---- the standard-library array type ----


class Array:
    """An n-dimensional float32 ('f') or int32 ('i') array without numpy: .shape, .data (a flat memoryview of
    the elements), .tolist(), a[i, j] indexing with integers, len(), and numpy.asarray(a) if numpy is present.
    It may view memory owned by the library (an adapter's A), in which case it keeps its owner alive."""

    __slots__ = ("_mv", "shape", "_keep", "__weakref__")

    def __init__(self, data, shape, _keep=None):
        mv = memoryview(data)
        fmt = _fmt(mv)
        if fmt not in ("f", "i") or mv.itemsize != 4:
            raise TypeError("pissa.Array holds float32 ('f') or int32 ('i') elements")
        mv = mv.cast("B").cast(fmt)
        shape = tuple(int(s) for s in shape)
        if _prod(shape) != len(mv):
            raise ValueError(f"pissa.Array: shape {shape} does not hold {len(mv)} elements")
        self._mv, self.shape, self._keep = mv, shape, _keep

    @classmethod
    def zeros(cls, shape, typecode="f"):
        return cls(_array.array(typecode, bytes(4 * _prod(shape))), shape)

    @property
    def data(self):
        return self._mv

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def typecode(self):
        return self._mv.format

    def __len__(self):
        return self.shape[0] if self.shape else 1

    def _offset(self, idx):
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) != len(self.shape) or not all(isinstance(i, int) for i in idx):
            raise IndexError("pissa.Array: index with one integer per dimension, e.g. a[i, j]")
        off = 0
        for i, n in zip(idx, self.shape):
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"pissa.Array: index {idx} out of range for shape {self.shape}")
            off = off * n + i
        return off

    def __getitem__(self, idx):
        return self._mv[self._offset(idx)]

    def __setitem__(self, idx, value):
        self._mv[self._offset(idx)] = value

    def tolist(self):
        flat = self._mv.tolist()
        for n in reversed(self.shape[1:]):
            flat = [flat[i:i + n] for i in range(0, len(flat), n)]
        return flat

    def __array__(self, dtype=None):
        a = np.frombuffer(self._mv, dtype=np.float32 if self.typecode == "f" else np.int32).reshape(self.shape)
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"pissa.Array(shape={self.shape}, typecode={self.typecode!r})"


def _fmt(mv):
    """Struct format without a native byte-order prefix (ctypes buffers say '<f')."""
    f = mv.format
    return f[1:] if len(f) == 2 and f[0] in "<@=" else f


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# ---- inputs ----

_CT = {"f": c_float, "i": c_int32}
_NP = {"f": "float32", "i": "int32"}  # numpy dtype names, also used in messages


class Buf:
    """An input converted for C: .ptr (POINTER(c_float) or POINTER(c_int32)), .shape, and what keeps it alive."""

    __slots__ = ("ptr", "shape", "keep")

    def __init__(self, ptr, shape, keep):
        self.ptr, self.shape, self.keep = ptr, shape, keep


def _flatten(x, name, code):
    """Nested lists/tuples of numbers -> (flat list, shape); ragged lists raise ValueError."""
    if not isinstance(x, (list, tuple)):
        ok = isinstance(x, (int, float)) if code == "f" else isinstance(x, int)
        if not ok or isinstance(x, bool):
            raise TypeError(f"{name}: elements must be {'numbers' if code == 'f' else 'integers'}, "
                            f"got {type(x).__name__}")
        return [x], ()
    if not x:
        return [], (0,)
    if not isinstance(x[0], (list, tuple)):  # a row of scalars (the common case): no call per element
        kinds = int if code == "i" else (int, float)
        if all(isinstance(v, kinds) and not isinstance(v, bool) for v in x):
            return list(x), (len(x),)
    parts = [_flatten(e, name, code) for e in x]
    shape = parts[0][1]
    if any(p[1] != shape for p in parts):
        raise ValueError(f"{name}: ragged nested lists (rows of different lengths)")
    return [v for p in parts for v in p[0]], (len(x),) + shape


def as_input(x, name, code, ndims, writable=False):
    """Converts X to a C buffer of float32 (code 'f') or int32 ('i') with one of the dimensions counts NDIMS.

    numpy arrays must already have the dtype and be C-contiguous (passed without a copy); lists are copied."""
    if np is not None and isinstance(x, np.ndarray):
        if x.dtype != np.dtype(_NP[code]):
            raise TypeError(f"{name}: expected a {_NP[code]} array, got {x.dtype} "
                            f"(convert with .astype(numpy.{_NP[code]}))")
        if x.ndim not in ndims:
            raise ValueError(f"{name}: expected {_dims_text(ndims)}, got shape {x.shape}")
        if not x.flags.c_contiguous:
            raise ValueError(f"{name}: the array is not C-contiguous (use numpy.ascontiguousarray)")
        if writable and not x.flags.writeable:
            raise ValueError(f"{name}: the array is read-only")
        return Buf(x.ctypes.data_as(POINTER(_CT[code])), tuple(x.shape), x)
    if isinstance(x, Array):
        mv, shape = x.data, x.shape
    elif isinstance(x, (list, tuple)):
        flat, shape = _flatten(x, name, code)
        mv = memoryview(_array.array(code, flat))
    elif isinstance(x, (_array.array, memoryview, bytes, bytearray)):
        mv = memoryview(x)
        if isinstance(x, (bytes, bytearray)):
            mv = mv.cast(code)
        elif _fmt(mv) != code or mv.itemsize != 4:
            raise TypeError(f"{name}: expected {_NP[code]} elements (typecode '{code}'), got format "
                            f"{mv.format!r}")
        if not mv.c_contiguous:
            raise ValueError(f"{name}: the buffer is not C-contiguous")
        shape = tuple(mv.shape)
        mv = mv.cast("B").cast(code)
    elif np is not None and hasattr(x, "__array_interface__"):
        return as_input(np.asarray(x), name, code, ndims, writable)
    elif hasattr(x, "__iter__") and not isinstance(x, (str, dict)):  # range, a generator, ...: its items, once
        return as_input(list(x), name, code, ndims, writable)
    else:
        raise TypeError(f"{name}: expected a numpy array, pissa.Array, array.array, memoryview, bytes or nested "
                        f"lists, got {type(x).__name__}")
    if len(shape) not in ndims:
        raise ValueError(f"{name}: expected {_dims_text(ndims)}, got shape {shape}")
    if mv.readonly:
        if writable:
            raise ValueError(f"{name}: the buffer is read-only")
        mv = memoryview(_array.array(code, mv.tobytes()))  # ctypes needs a writable buffer to point into
    arr, ptr = _pointer_into(mv, code)
    return Buf(ptr, shape, (mv, arr))


def _pointer_into(mv, code):
    """A ctypes array over the writable buffer MV and a pointer to its first element (an empty buffer gets a
    one-element array of its own: from_buffer refuses a zero-length one)."""
    arr = (_CT[code] * len(mv)).from_buffer(mv) if len(mv) else (_CT[code] * 1)()
    return arr, ctypes.cast(arr, POINTER(_CT[code]))


def _dims_text(ndims):
    return " or ".join(f"a {n}-D array" for n in ndims)


# ---- outputs ----


def new_output(shape, code="f"):
    """A zero-filled array for C to fill: numpy if available, else pissa.Array. Returns (array, pointer)."""
    if np is not None:
        a = np.zeros(shape, dtype=_NP[code])
        return a, a.ctypes.data_as(POINTER(_CT[code]))
    a = Array.zeros(shape, code)
    return a, _pointer_into(a.data, code)[1]


def view(ptr, shape, state, code="f"):
    """An array over library memory at PTR (no copy) that keeps STATE's C object alive while the array lives."""
    if not ptr:
        return None
    n = _prod(shape)
    buf = (_CT[code] * n).from_address(ctypes.addressof(ptr.contents))
    state.acquire()
    weakref.finalize(buf, state.release)
    if np is not None:
        return np.frombuffer(buf, dtype=_NP[code]).reshape(shape)  # .base chain reaches buf
    return Array(buf, shape, _keep=buf)


def copy_out(ptr, shape, code="f"):
    """A copy of library memory at PTR as a new array."""
    n = _prod(shape)
    out, optr = new_output(shape, code)
    if n:
        ctypes.memmove(optr, ptr, 4 * n)
    return out
