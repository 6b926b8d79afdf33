"""The CIFAR batch unpickler: real batches load, nothing in a file runs, bad files are one ConfigError line."""

import os
import pickle
import pickletools
import random
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fbl.data.safe_pickle import load_pickle_file
from fbl.errors import ConfigError

# ---------------------------------------------------------------- helpers


def small_batch(n=3, seed=0):
    """A CIFAR-10 python batch as the official files hold it (smaller)."""
    rng = np.random.RandomState(seed)
    return {
        "batch_label": "training batch 1 of 5",
        "labels": rng.randint(0, 10, size=n).tolist(),
        "data": rng.randint(0, 256, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def assert_same_batch(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            # Same values and type; numpy itself returns some non-native byte orders as native.
            assert type(loaded[key]) is np.ndarray and loaded[key].dtype.str[1:] == value.dtype.str[1:]
            assert loaded[key].shape == value.shape and np.array_equal(loaded[key], value)
        else:
            assert type(loaded[key]) is type(value) and loaded[key] == value


def write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def batch_path(root):
    return root / "cifar-10-batches-py" / "data_batch_1"


def one_line_error(path):
    with pytest.raises(ConfigError) as err:
        load_pickle_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def is_plain(obj):
    """Only what a CIFAR batch may hold: containers, strings, bytes, numbers, numeric numpy data."""
    if isinstance(obj, (list, tuple)):
        return all(is_plain(item) for item in obj)
    if isinstance(obj, dict):
        return all(is_plain(k) and is_plain(v) for k, v in obj.items())
    if isinstance(obj, (np.ndarray, np.generic, np.dtype)):
        return obj.dtype.kind in "biufc" if not isinstance(obj, np.dtype) else obj.kind in "biufc"
    return isinstance(obj, (str, bytes, bytearray, int, float, complex, type(None)))


# Python 2 with numpy 1.x, as the official archives were written: protocol 2, ``str`` (bytes) as
# BINSTRING, arrays through numpy.core.multiarray._reconstruct. Written opcode by opcode.


def _s(text):
    raw = text.encode("latin1")
    return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw


def _i(n):
    return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n)


def py2_array(raw, shape, code="u1", byteorder="|", dtype_state_tail=(b"N", b"N", b"N"), flags=0):
    empty = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _i(0) + b"\x85" + _s("b") + b"\x87R"
    dtype = b"cnumpy\ndtype\n" + _s(code) + _i(0) + _i(1) + b"\x87R"  # numpy.dtype(code, False, True)
    # BUILD (version 3, byteorder, subarray, names, fields, elsize, alignment, flags)
    dtype_state = b"(" + _i(3) + _s(byteorder) + b"".join(dtype_state_tail) + _i(-1) + _i(-1) + _i(flags) + b"tb"
    shape_tuple = b"(" + b"".join(_i(n) for n in shape) + b"t"
    data = b"T" + struct.pack("<i", len(raw)) + raw
    # BUILD (version 1, shape, dtype, is_fortran=False, data)
    return empty + b"(" + _i(1) + shape_tuple + dtype + dtype_state + b"\x89" + data + b"tb"


def py2_batch(rows, labels, array=None):
    array = array if array is not None else py2_array(rows.tobytes(), rows.shape)
    label_list = b"](" + b"".join(_i(n) for n in labels) + b"e"
    items = _s("batch_label") + _s("training batch 1 of 5") + _s("labels") + label_list + _s("data") + array
    return b"\x80\x02}(" + items + b"u."


class Payload:
    """Pickles as ``function(*args)``: what a crafted file asks the unpickler to call."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker):
    """Calls that each create ``marker`` when unpickled with ``pickle.load``."""
    return {
        "os.system": Payload(os.system, f"touch {shlex.quote(str(marker))}"),
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "pathlib.Path.touch": Payload(Path(marker).touch),
        "numpy.save": Payload(np.save, str(marker), np.zeros(1)),
    }


PAYLOADS = list(payloads(Path("x")))


# ---------------------------------------------------------------- batches that load


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_batch_pickled_by_numpy_loads_unchanged(tmp_path, protocol):
    batch = small_batch()
    path = write(batch_path(tmp_path), pickle.dumps(batch, protocol=protocol))
    loaded = load_pickle_file(path)
    assert_same_batch(loaded, batch)
    assert loaded["data"].flags.writeable


def test_numeric_arrays_and_scalars_of_every_kind(tmp_path):
    values = {
        "big_endian": np.arange(12, dtype=">i4").reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "strided": np.arange(10, dtype=np.int16)[::-3],
        "bool": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -3j]),
        "zero_d": np.array(7, dtype=np.uint64),
        "empty": np.zeros((0, 3072), dtype=np.uint8),
        "int_scalar": np.int64(-5),
        "float_scalar": np.float16(1.5),
        "nested": [(1, 2.5, None, True, b"raw", b"", "text")],
    }
    for protocol in (2, 5):
        path = write(tmp_path / f"p{protocol}", pickle.dumps(values, protocol=protocol))
        loaded = load_pickle_file(path)
        # The reference: the same pickle through the standard loader (safe here: the test wrote it).
        expected = pickle.loads(path.read_bytes(), encoding="latin1")
        assert_same_batch(loaded, expected)
        assert loaded["fortran"].flags.f_contiguous


def test_python2_official_layout_loads(tmp_path):
    rows = np.random.RandomState(1).randint(0, 256, size=(2, 3072), dtype=np.uint8)
    path = write(batch_path(tmp_path), py2_batch(rows, [3, 9]))
    loaded = load_pickle_file(path)
    assert loaded["batch_label"] == "training batch 1 of 5" and loaded["labels"] == [3, 9]
    assert loaded["data"].dtype == np.uint8 and np.array_equal(loaded["data"], rows)
    # The standard loader reads the hand-written file the same way.
    assert_same_batch(loaded, pickle.loads(path.read_bytes(), encoding="latin1"))


# ---------------------------------------------------------------- nothing runs


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("name", PAYLOADS)
def test_crafted_pickle_runs_nothing(tmp_path, name, protocol):
    # The payload is live: the standard loader creates its marker.
    control = tmp_path / "control_marker.npy"
    pickle.loads(pickle.dumps(payloads(control)[name], protocol=protocol))
    assert control.exists()

    marker = tmp_path / "marker.npy"
    for hidden in (payloads(marker)[name], {**small_batch(), "filenames": [payloads(marker)[name]]}):
        path = write(batch_path(tmp_path), pickle.dumps(hidden, protocol=protocol))
        message = one_line_error(path)
        assert "can load safely: it references " in message
        assert not marker.exists()


def test_numpy_dtype_state_that_would_read_bytes_as_pointers_is_refused(tmp_path):
    # A void dtype with object flags (numpy would take the raw bytes for PyObject pointers), and a
    # plain dtype with fields or an unknown byte order: never handed to numpy's __setstate__.
    rows = np.zeros((1, 8), dtype=np.uint8)
    crafted = {
        "void_with_object_flags": py2_array(rows.tobytes(), (1,), code="V8", flags=63),
        "object": py2_array(rows.tobytes(), (1,), code="O8", flags=63),
        "fields": py2_array(rows.tobytes(), (8,), dtype_state_tail=(b"N", b"(" + _s("a") + b"t", b"}")),
        "byteorder": py2_array(rows.tobytes(), (8,), byteorder="?"),
    }
    for name, array in crafted.items():
        message = one_line_error(write(tmp_path / name, py2_batch(rows, [0], array=array)))
        assert "dtype" in message, name


def test_array_header_claiming_more_data_than_the_file_holds(tmp_path):
    # 10**12 elements claimed, 8 bytes present: refused before anything that size is allocated.
    path = write(tmp_path / "huge", py2_batch(None, [0], array=py2_array(b"\0" * 8, (10**6, 10**6))))
    assert "8 bytes" in one_line_error(path)


@pytest.mark.parametrize(
    "obj, expected",
    [
        (np.array(["a", None], dtype=object), "dtype O8"),
        (np.array(["text"]), "dtype U4"),
        ({"labels": {1, 2}}, "holds a set"),
        (np.ndarray, "numpy type or function itself"),
    ],
)
def test_well_formed_pickles_of_other_things_are_refused(tmp_path, obj, expected):
    path = write(tmp_path / "data_batch_1", pickle.dumps(obj, protocol=4))
    assert expected in one_line_error(path)


# ---------------------------------------------------------------- damaged files


def test_empty_truncated_random_and_text_files(tmp_path):
    valid = pickle.dumps(small_batch(), protocol=2)
    assert one_line_error(write(tmp_path / "empty", b"")).endswith(": the file is empty")
    for cut in (1, 40, len(valid) // 2, len(valid) - 1):
        assert "truncated" in one_line_error(write(tmp_path / f"cut{cut}", valid[:cut]))
    one_line_error(write(tmp_path / "random", random.Random(0).randbytes(4096)))
    one_line_error(write(tmp_path / "text", b"airplane,automobile,bird\nnot a pickle\n"))


def test_missing_file_is_one_line(tmp_path):
    assert "could not read" in one_line_error(tmp_path / "absent")


# ---------------------------------------------------------------- properties

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A call to os.system in the two spellings a pickle can use (text GLOBAL and STACK_GLOBAL).
INJECTIONS = [
    b"cposix\nsystem\n(S'touch {marker}'\ntR",
    b"\x8c\x05posix\x8c\x06system\x93\x8c{n}touch {marker}\x85R",
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("property")


def load_or_refuse(path):
    """The property: a file either loads as plain data or is refused with a one-line ConfigError."""
    try:
        loaded = load_pickle_file(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert is_plain(loaded)


@PROPERTY
@given(st.binary(max_size=400))
def test_random_bytes_load_or_are_refused(scratch, data):
    load_or_refuse(write(scratch / "random", data))


@PROPERTY
@given(
    protocol=st.integers(0, 5),
    cut=st.integers(0, 10**6),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
    inject=st.none() | st.tuples(st.integers(0, 10**6), st.sampled_from(INJECTIONS)),
)
def test_damaged_batches_load_or_are_refused_and_run_nothing(scratch, protocol, cut, flips, inject):
    valid = pickle.dumps(small_batch(n=1), protocol=protocol)
    data = bytearray(valid)
    marker = scratch / "injected_marker"
    if inject is not None:
        # Inserted between two opcodes, where the standard loader would run it.
        index, template = inject
        boundaries = [position for _, _, position in pickletools.genops(valid)]
        at = boundaries[index % len(boundaries)]
        command = f"touch {marker}".encode()
        data[at:at] = template.replace(b"{n}", bytes([len(command)])).replace(b"{marker}", str(marker).encode())
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = data[: len(data) - cut % len(data)] if cut % 3 == 0 else data  # a third of the cases truncated
    load_or_refuse(write(scratch / "damaged", bytes(data)))
    assert not marker.exists()
