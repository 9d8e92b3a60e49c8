"""The container of model and state files: safetensors whose JSON header carries a sha256 of the
whole file, header included, so that any byte damaged on disk or in transfer is refused.

The digest sits in the header itself: the file is written with 64 zeros in its place, hashed, and the
zeros are replaced by the digest (same length, so nothing moves). Checking undoes that replacement.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CHECKSUM_KEY = "file_sha256"
_PLACEHOLDER = "0" * 64
# How the key and its value appear in the header: the metadata is JSON inside a JSON string.
_ANCHOR = b'\\"' + CHECKSUM_KEY.encode() + b'\\": \\"'


class Damaged(ValueError):
    """The file's bytes do not hold together; the message says how."""


def write(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    """safetensors bytes with `meta` as JSON under the key "streamcast", sealed with their sha256."""
    from safetensors.torch import save as save_bytes  # torch only where tensors are written

    text = json.dumps({**meta, CHECKSUM_KEY: _PLACEHOLDER}, sort_keys=True)
    raw = save_bytes(tensors, metadata={"streamcast": text})
    at = _digest_at(raw, _PLACEHOLDER)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:at] + digest.encode() + raw[at + 64 :]


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
    sealed = hashlib.sha256(raw[:at] + _PLACEHOLDER.encode() + raw[at + 64 :]).hexdigest()
    if sealed != digest:
        raise Damaged("its bytes do not match its checksum")
    return True


def _digest_at(raw: bytes, digest: str) -> int:
    size = int.from_bytes(raw[:8], "little")
    head = raw[: 8 + size]
    key = _ANCHOR + digest.encode() + b'\\"'
    at = head.find(key)
    if at < 0 or head.find(key, at + 1) >= 0:
        raise Damaged("its checksum is not where it belongs")
    return at + len(_ANCHOR)
