"""The container of model and state files: safetensors whose JSON header carries a sha256 of the
whole file, header included, so that any byte damaged on disk or in transfer is refused.

The digest sits in the header itself: the file is written with 64 zeros in its place, hashed, and the
zeros are replaced by the digest (same length, so nothing moves). Checking undoes that replacement.

Written and read here rather than by safetensors' own functions, which copy every tensor into a
bytes object: a million series' stream state is a gigabyte, and each copy costs seconds to
allocate. The files are plain safetensors all the same (tested against the library both ways).

Tensors are read as numpy arrays, so that a stream serves and checkpoints without torch; they are
written from numpy arrays or torch tensors alike (a model file's weights are torch's), the same
bytes either way.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from streamcast.atomic import atomic_path
from streamcast.writeback import start_writeback

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import numpy as np

CHECKSUM_KEY = "file_sha256"
_PLACEHOLDER = "0" * 64
# How the key and its value appear in the header: the metadata is JSON inside a JSON string.
_ANCHOR = b'\\"' + CHECKSUM_KEY.encode() + b'\\": \\"'


class Damaged(ValueError):
    """The file's bytes do not hold together; the message says how."""


# safetensors' name of each dtype, by numpy's and torch's name for it (without "torch."). bfloat16
# has no numpy dtype: it is written from torch tensors only, and never read (no state file holds it).
_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
_DTYPES = {name: dtype for dtype, name in _NAMES.items()}

Tensor = Any  # a numpy array or a torch tensor: both are written, numpy arrays are read


def write(tensors: Mapping[str, Tensor], meta: dict) -> bytes:
    """safetensors bytes with `meta` as JSON under the key "streamcast", sealed with their sha256."""
    out = io.BytesIO()
    dump(out, tensors, meta)
    return out.getvalue()


def save(path: str | Path, tensors: Mapping[str, Tensor], meta: dict) -> None:
    """Write the sealed file atomically, straight from the tensors' memory: a million series'
    stream state is a gigabyte, which one more copy (or two, as safetensors' own serializer and a
    bytes object make) would take seconds to allocate."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        dump(f, tensors, meta)


class Later(NamedTuple):
    """A tensor built while the tensors before it are written: its dtype and shape now (the header
    needs them first), its values from `build()`. A million series' checkpoint builds its columns
    from Python lists for about 0.4 s, which the writing of its gigabyte of hidden rows hides."""

    dtype: str  # numpy's name, e.g. "float64"
    shape: tuple[int, ...]
    build: Callable[[], np.ndarray]


class Encoded(NamedTuple):
    """A metadata value already encoded as the header holds it: its JSON, escaped as the text of
    a JSON string (the metadata is JSON inside the header's JSON). A million series' ids take 0.15
    s to encode so; a stream keeps those it has encoded and adds the new ones (`encoded_list`)."""

    escaped: str


def encoded_list(items: list, before: Encoded | None = None, start: int = 0) -> Encoded:
    """The list `items` encoded, reusing `before`, the encoding of `items[:start]`."""
    if before is not None and start and start == len(items):
        return before
    new = json.dumps(json.dumps(items[start:])[1:-1])[1:-1]
    if before is None or start == 0:
        return Encoded(f"[{new}]")
    return Encoded(f"{before.escaped[:-1]}, {new}]")


def dump(f: BinaryIO, tensors: Mapping[str, Tensor | Later], meta: dict) -> None:
    """Write a safetensors file into the seekable `f`, hashing as it goes, then put the digest in
    the placeholder it hashed in its place (same length, so nothing moves)."""
    encoded = {key: value for key, value in meta.items() if isinstance(value, Encoded)}
    marks = {key: f"streamcast-encoded-{os.urandom(8).hex()}" for key in encoded}
    text = json.dumps({**meta, **marks, CHECKSUM_KEY: _PLACEHOLDER}, sort_keys=True)
    ready = {name: _bytes_of(t) for name, t in tensors.items() if not isinstance(t, Later)}
    later = {name: t for name, t in tensors.items() if isinstance(t, Later)}
    names = _order(ready, later)
    if names is None:  # the tensors built later would not stay aligned after the others: build now
        ready.update({name: _bytes_of(_built(name, t)) for name, t in later.items()})
        later = {}
        names = _order(ready, later)
    entries: dict = {"__metadata__": {"streamcast": text}}
    offset = 0
    for name in names:
        dtype, shape, size = _described(ready[name] if name in ready else later[name])
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(entries, separators=(",", ":"))
    for key, mark in marks.items():
        head = head.replace(f'\\"{mark}\\"', encoded[key].escaped, 1)
    head = head.encode()
    head += b" " * (-len(head) % 8)  # the data starts aligned to 8 bytes
    start = f.tell()
    first = len(head).to_bytes(8, "little") + head
    at = _digest_at(first, _PLACEHOLDER)
    digest = hashlib.sha256(first)
    f.write(first)
    pieces = [memoryview(ready[name].data) for name in names if name in ready and ready[name].data.size]
    if later:
        with ThreadPoolExecutor(1) as pool:  # the writes and the hash release the GIL; the builds hold it
            written = pool.submit(_write_hashed, f, pieces, digest)
            built = {name: _bytes_of(_built(name, t)) for name, t in later.items()}
            written.result()
        pieces = [memoryview(built[name].data) for name in names if name in built and built[name].data.size]
    _write_hashed(f, pieces, digest)
    end = f.tell()
    f.seek(start + at)
    f.write(digest.hexdigest().encode())
    f.seek(end)


def _order(ready: dict[str, _Laid], later: dict[str, Later]) -> list[str] | None:
    """The tensors' order in the file: as safetensors orders them, widest dtype first, so that every
    tensor stays aligned to its size; tensors built later come after the others, in the same order
    among themselves, where that keeps them aligned (None where it does not)."""
    first = sorted(ready, key=lambda name: (-ready[name].itemsize, name))
    rest = sorted(later, key=lambda name: (-_itemsize(later[name]), name))
    offset = sum(ready[name].data.size for name in first)
    for name in rest:
        if offset % _itemsize(later[name]):
            return None
        offset += _described(later[name])[2]
    return first + rest


def _itemsize(tensor: Later) -> int:
    import numpy as np

    return np.dtype(tensor.dtype).itemsize


def _described(tensor: _Laid | Later) -> tuple[str, list[int], int]:
    """The dtype's safetensors name, the shape and the size in bytes of a tensor as laid out."""
    if isinstance(tensor, Later):
        return _NAMES[tensor.dtype], list(tensor.shape), math.prod(tensor.shape) * _itemsize(tensor)
    return tensor.dtype, tensor.shape, tensor.data.size


def _built(name: str, tensor: Later) -> np.ndarray:
    array = tensor.build()
    if array.dtype.name != tensor.dtype or tuple(array.shape) != tuple(tensor.shape):
        raise ValueError(
            f"tensor {name!r} was built {array.dtype.name} {array.shape}, not {tensor.dtype} {tensor.shape}"
        )
    return array


class _Laid(NamedTuple):
    """A tensor as the file holds it: its dtype's name, shape, element size and raw bytes."""

    dtype: str
    shape: list[int]
    itemsize: int
    data: np.ndarray  # (bytes,) uint8, a view of the tensor's memory where it is contiguous


def _bytes_of(tensor: Tensor) -> _Laid:
    """The bytes of a numpy array or of a torch tensor (torch is imported only for one, which
    its caller has imported already); a view, copied only where the memory is not contiguous."""
    if type(tensor).__module__.startswith("torch"):
        import torch

        t = tensor.detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy()  # bfloat16 too, which numpy cannot hold
        return _Laid(_NAMES[str(t.dtype).removeprefix("torch.")], list(t.shape), t.element_size(), data)
    import numpy as np  # here, not on top: `info` reads headers without it

    array = np.asarray(tensor, order="C")  # np.ascontiguousarray would make a scalar 1-d
    if not array.dtype.isnative:
        raise ValueError(f"{array.dtype.str} is not in this machine's byte order, as safetensors is")
    data = array.reshape(-1).view(np.uint8)
    return _Laid(_NAMES[array.dtype.name], list(array.shape), array.itemsize, data)


_CHUNK = 1 << 24


def _write_hashed(f: BinaryIO, pieces: list[memoryview], digest) -> None:
    """Write and hash `pieces` in order; past a few chunks the hash of each chunk runs on a second
    thread while the chunk is written (both release the GIL), and the disk starts taking each chunk
    as soon as it is written (`writeback`), so a large file costs about its hash alone."""
    chunks = [piece[i : i + _CHUNK] for piece in pieces for i in range(0, len(piece), _CHUNK)]
    if len(chunks) < 4:
        for chunk in chunks:
            digest.update(chunk)
            f.write(chunk)
        return
    with ThreadPoolExecutor(1) as pool:
        for chunk in chunks:
            hashed = pool.submit(digest.update, chunk)
            at = f.tell()
            f.write(chunk)
            start_writeback(f, at, len(chunk))
            hashed.result()


def header(raw: bytes) -> dict:
    """The "streamcast" metadata of a safetensors file as a dict; Damaged when it has none."""
    if len(raw) < 8:
        raise Damaged("too short")
    size = int.from_bytes(raw[:8], "little")
    if size > len(raw) - 8:
        raise Damaged("bad header")
    try:
        outer = json.loads(raw[8 : 8 + size])
        meta = json.loads(outer["__metadata__"]["streamcast"])
    except RecursionError:
        raise Damaged("header nested too deeply") from None
    except (ValueError, KeyError, TypeError):
        raise Damaged("no streamcast metadata") from None
    if not isinstance(meta, dict):
        raise Damaged("no streamcast metadata")
    _check_json(meta)
    return meta


MAX_DEPTH = 32  # of the metadata's JSON: what streamcast writes needs 5
MAX_INT = 2**63  # JSON integers are unbounded in Python; no field of ours needs more than int64


def _check_json(value) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, with integers beyond int64, or with text that is
    not valid Unicode (JSON allows lone surrogates, which nothing can print), without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            item = list(item.values())
        if isinstance(item, list):
            if depth > MAX_DEPTH:
                raise Damaged("header nested too deeply")
            if all(isinstance(x, str) for x in item):  # series ids: a million checked at C speed
                _check_text("".join(item))
                continue
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, int) and not -MAX_INT <= item < MAX_INT:
            raise Damaged("a number in the header is out of range")
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise Damaged("a text in the header is not valid Unicode") from None


def check(raw: bytes, meta: dict, required: bool) -> bool:
    """Verify the whole-file sha256; False for a file written before there was one (when not
    `required`). Damaged when the file is not exactly as it was written."""
    digest = meta.get(CHECKSUM_KEY)
    if digest is None and not required:
        return False
    if not isinstance(digest, str) or len(digest) != 64:
        raise Damaged("its checksum is missing")
    at = _digest_at(raw, digest)
    view = memoryview(raw)  # no copies: a state file can be a gigabyte
    sealed = hashlib.sha256(view[:at])
    sealed.update(_PLACEHOLDER.encode())
    sealed.update(view[at + 64 :])
    if sealed.hexdigest() != digest:
        raise Damaged("its bytes do not match its checksum")
    return True


def read_tensors(raw: bytearray) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file held in `raw`, as numpy views of its memory, not copies (a
    state file of a million series is a gigabyte; safetensors' own loader copies every tensor).
    Checked as safetensors checks a file: known dtypes, shapes that fit their bytes, tensors
    contiguous and in bounds; ValueError when they are not, or when one is bfloat16 (no numpy
    dtype holds it, and no state file does)."""
    import numpy as np

    size = int.from_bytes(raw[:8], "little")
    try:
        entries = json.loads(bytes(raw[8 : 8 + size]))
    except RecursionError:
        raise ValueError("the header is nested too deeply") from None
    if not isinstance(entries, dict):
        raise ValueError("the header is not a JSON object")
    entries.pop("__metadata__", None)
    start = 8 + size
    placed = []
    for name, entry in entries.items():
        try:
            dtype_name = _DTYPES[entry["dtype"]]
            shape = [_integer(n) for n in entry["shape"]]
            begin, end = (_integer(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r} is not described as safetensors describes one") from None
        if dtype_name == "bfloat16":
            raise ValueError(f"tensor {name!r} is BF16, which numpy cannot hold")
        dtype = np.dtype(dtype_name)
        count = math.prod(shape)
        if min(shape, default=0) < 0 or end - begin != count * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: its shape does not fit its bytes")
        placed.append((begin, end, name, dtype, shape, count))
    placed.sort()
    tensors = {}
    offset = 0
    for begin, end, name, dtype, shape, count in placed:
        if begin != offset:
            raise ValueError(f"tensor {name!r} is not where the one before it ends")
        offset = end
        at = start + begin
        if count == 0:
            tensors[name] = np.zeros(shape, dtype=dtype)
        elif at % dtype.itemsize:  # a foreign file's unaligned tensor: copied into place
            tensors[name] = np.frombuffer(bytearray(raw[at : at + end - begin]), dtype=dtype).reshape(shape)
        else:
            tensors[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=at).reshape(shape)
        if dtype == np.bool_ and count and int(tensors[name].view(np.uint8).max()) > 1:
            raise ValueError(f"tensor {name!r} holds a bool that is neither 0 nor 1")
    if start + offset != len(raw):
        raise ValueError("the tensors do not fill the file")
    return tensors


def _integer(value) -> int:
    """A JSON integer, nothing else: Python's json also reads Infinity, 1e400, true and "12"."""
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value


def _digest_at(raw: bytes, digest: str) -> int:
    size = int.from_bytes(raw[:8], "little")
    head = raw[: 8 + size]
    key = _ANCHOR + digest.encode() + b'\\"'
    at = head.find(key)
    if at < 0 or head.find(key, at + 1) >= 0:
        raise Damaged("its checksum is not where it belongs")
    return at + len(_ANCHOR)
