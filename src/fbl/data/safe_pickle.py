"""Reading CIFAR python batches without letting the file run code.

``pickle.load`` calls whatever callable a pickle names (``os.system``, ``builtins.eval``, ...), so a
crafted ``data_batch_1`` could run any command while "loading a dataset". :class:`SafeUnpickler`
imports nothing the file names. A CIFAR batch is dicts, lists, tuples, strings, bytes, numbers and
numpy arrays; the only globals those pickles reference are numpy's array rebuilders (spelled
``numpy.core`` before numpy 2 and ``numpy._core`` since) and, in protocols 0-2, ``_codecs.encode``
for bytes. Each of those maps to a stand-in that records its arguments; arrays are then built here
from plain values that were checked first: a numeric dtype (bool, int, uint, float, complex), a
shape of integers and exactly ``prod(shape) * itemsize`` bytes. Even numpy's own ``__setstate__``
never sees the file's data, because it trusts fields such as dtype flags and item sizes that a
crafted file could set to make raw bytes read as object pointers. Every other global is refused.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fbl.errors import ConfigError

PathLike = str | Path

# numpy pickles a dtype as kind + item size ('u1', 'i8', 'f4', 'c16', 'b1'); only numeric kinds are data.
_NUMERIC_DTYPE = re.compile(r"[biufc][0-9]{1,2}")
_BYTE_ORDERS = ("<", ">", "|", "=")

# What a malformed or hostile pickle makes the unpickler (or the stand-ins below) raise. Only
# ``SafeUnpickler.load`` runs inside this net, so a bug elsewhere still shows its traceback.
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    MemoryError,
    RecursionError,
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; ``str()`` is ``module.name``."""


class _Unsupported(pickle.UnpicklingError):
    """A well-formed pickle of something a CIFAR batch never holds (object arrays, sets, ...)."""


class _Stub:
    """Base of everything :class:`SafeUnpickler` hands out in place of a global or its result.

    No instance ``__dict__`` and a ``__setstate__`` of its own, so the pickle's BUILD opcode cannot
    set attributes on it (or, through it, on a real function).
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Unsupported(f"unexpected state for {type(self).__name__.lstrip('_')}")


class _Marker(_Stub):
    """Stands for ``numpy.ndarray``, which real pickles only pass to ``_reconstruct``."""

    __slots__ = ()


class _Dtype(_Stub):
    """``numpy.dtype(code, align, copy)`` followed by its BUILD state; numeric dtypes only."""

    __slots__ = ("dtype",)

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
            raise _Unsupported(f"dtype {_shown(code)} is not a plain numeric type")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]);
        # very old versions leave out names and/or the version. Only the byte order matters for a
        # plain numeric dtype; subarrays, fields and metadata would make it something else.
        if not isinstance(state, tuple) or not 5 <= len(state) <= 9:
            raise _Unsupported("malformed dtype state")
        if len(state) == 5:  # (byteorder, subarray, fields, elsize, alignment)
            byteorder, rest = state[0], state[1:3]
        elif len(state) == 6:  # (version, byteorder, subarray, fields, elsize, alignment)
            byteorder, rest = state[1], state[2:4]
        else:  # (version, byteorder, subarray, names, fields, elsize, alignment[, flags[, metadata]])
            byteorder, rest = state[1], state[2:5] + state[8:]
        if byteorder not in _BYTE_ORDERS or any(item is not None for item in rest):
            raise _Unsupported("dtype state is not that of a plain numeric type")
        self.dtype = self.dtype.newbyteorder(byteorder) if byteorder in "<>" else self.dtype


class _Array(_Stub):
    """The empty array ``_reconstruct`` returns; BUILD fills it from ``(version, shape, dtype, fortran, data)``."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Unsupported("malformed array state")
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(fortran, (bool, int)):
            raise _Unsupported("malformed array state")
        self.array = _build_array(data, dtype, shape, "F" if fortran else "C")


class _Value(_Stub):
    """A finished value (scalar or array) made by a stand-in; unwrapped once loading is done."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Call(_Stub):
    """A callable the pickle may call (REDUCE): a fresh wrapper, so BUILD cannot reach the function."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)


def _shown(obj: Any, limit: int = 120) -> str:
    """``obj`` as one printable line of bounded length: it comes from the file."""
    text = obj if isinstance(obj, str) else repr(obj)
    text = text if text.isprintable() else ascii(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raw_bytes(data: Any) -> bytearray:
    """Array data as a private, writable buffer; Python 2 pickles hold it as a str (latin1-decoded)."""
    if isinstance(data, str):
        return bytearray(data, "latin1")
    if isinstance(data, bytearray):
        return data
    if isinstance(data, bytes):
        return bytearray(data)
    raise _Unsupported(f"array data is a {type(data).__name__}, not bytes")


def _build_array(data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, _Dtype):
        raise _Unsupported("array dtype is not a numpy dtype")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _Unsupported(f"array shape {_shown(shape)} is not a tuple of sizes")
    if order not in ("C", "F"):
        raise _Unsupported(f"array order {_shown(order)} is not 'C' or 'F'")
    raw = _raw_bytes(data)
    expected = math.prod(shape) * dtype.dtype.itemsize
    if len(raw) != expected:
        raise _Unsupported(f"array data has {len(raw)} bytes, shape {shape} of {dtype.dtype} needs {expected}")
    array = np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)
    # A bool is one byte that must be 0 or 1; the file could hold any byte value there.
    return array.view(np.uint8) != 0 if array.dtype.kind == "b" else array


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _Array:
    # numpy's pickles call _reconstruct(ndarray, (0,), b'b') for an empty array that BUILD then fills.
    if not isinstance(subtype, _Marker):
        raise _Unsupported("_reconstruct of something other than numpy.ndarray")
    return _Array()


def _scalar(dtype: Any, data: Any) -> _Value:
    return _Value(_build_array(data, dtype, (), "C")[()])


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _Value:
    # Protocol 5 pickles a contiguous array as _frombuffer(bytearray, dtype, shape, order).
    return _Value(_build_array(buffer, dtype, shape, order))


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocols 0-2 write a bytes object b as _codecs.encode(b.decode('latin1'), 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Unsupported("_codecs.encode is allowed only as pickle writes bytes (latin1)")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocols 0-2 write b'' as bytes(); any argument would be an allocation size or a conversion.
    if args:
        raise _Unsupported("bytes() is allowed only without arguments")
    return b""


_ALLOWED: dict[tuple[str, str], Callable[[], _Stub]] = {}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = lambda: _Call(_reconstruct)
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = lambda: _Call(_scalar)
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = lambda: _Call(_frombuffer)
_ALLOWED[("numpy", "ndarray")] = _Marker
_ALLOWED[("numpy", "dtype")] = lambda: _Call(_Dtype)
_ALLOWED[("_codecs", "encode")] = lambda: _Call(_encode)
for _builtins in ("builtins", "__builtin__"):
    _ALLOWED[(_builtins, "bytes")] = lambda: _Call(_empty_bytes)

_LEAVES = (str, bytes, bytearray, int, float, complex, type(None), np.ndarray, np.generic)


def _resolve(obj: Any, done: dict[int, tuple[Any, Any]]) -> Any:
    """``obj`` with every stand-in replaced by the array or value it stands for; anything else is refused.

    ``done`` maps ``id(original)`` to ``(original, result)``; holding the original keeps its id from
    being reused by a new object while the walk replaces list items.
    """
    key = id(obj)
    if key in done:
        return done[key][1]
    if isinstance(obj, _LEAVES):
        return obj
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Unsupported("an array was never given its data")
        return obj.array
    if isinstance(obj, _Value):
        return obj.value
    if isinstance(obj, _Dtype):
        return obj.dtype
    if isinstance(obj, list):
        done[key] = (obj, obj)  # lists and dicts may contain themselves
        obj[:] = [_resolve(item, done) for item in obj]
        return obj
    if isinstance(obj, dict):
        done[key] = (obj, obj)
        for name, value in obj.items():
            if not isinstance(name, (str, bytes, int, float, type(None))):
                raise _Unsupported(f"a dict key is a {type(name).__name__}")
            obj[name] = _resolve(value, done)
        return obj
    if isinstance(obj, tuple):
        result = tuple(_resolve(item, done) for item in obj)
        done[key] = (obj, result)
        return result
    if isinstance(obj, _Stub):
        raise _Unsupported("it holds a numpy type or function itself rather than data")
    raise _Unsupported(f"it holds a {type(obj).__name__}, which CIFAR batches do not")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR python batches: plain containers, strings, numbers and numeric numpy arrays.

    Globals outside the allow-list raise :class:`RefusedGlobal` before anything is imported or
    called. Strings written by Python 2 (the official archives) are decoded as latin1.
    """

    def __init__(self, file) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise RefusedGlobal(f"{_shown(module)}.{_shown(name)}")
        return factory()

    def load(self) -> Any:
        return _resolve(super().load(), {})


def _unpickle(handle, path: Path) -> object:
    unsafe = f"{path} is not a CIFAR python batch fbl can load safely"
    try:
        return SafeUnpickler(handle).load()
    except RefusedGlobal as exc:
        raise ConfigError(f"{unsafe}: it references {exc}") from None
    except EOFError as exc:
        what = "empty" if os.fstat(handle.fileno()).st_size == 0 else "truncated"
        raise ConfigError(f"{unsafe}: the file is {what}") from exc
    except _Unsupported as exc:
        raise ConfigError(f"{unsafe}: {exc}") from exc
    except _UNPICKLING_ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{unsafe}: not a valid pickle ({_shown(reason, 200)})") from exc


def load_pickle_file(path: PathLike) -> object:
    """Unpickle ``path`` with :class:`SafeUnpickler`; anything it cannot load is one :class:`ConfigError` line."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _unpickle(handle, path)
    except OSError as exc:
        raise ConfigError(f"could not read {path}: {exc.strerror or exc}") from exc
