"""A model file's header alone: its format, version and JSON metadata, checked, without torch.

`streamcast info` and the CLI's start-up need no network, so this module imports neither torch nor
the model: `modelfile` builds the network on top of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamcast import safefile
from streamcast.errors import ModelFileError, first_line
from streamcast.schema import ModelMeta, validate

FORMAT = "streamcast-model"
# 2: ensembles (member_configs) and target transforms; 3: a sha256 of the whole file in the
# header, required from this version on. Versions 1 and 2 carry a sha256 of the tensors only and
# keep loading; 4: the head's scale, lag inputs and highway start, inputs known in advance and static features,
# which a reader of 3 would ignore and misread; 5: an ensemble served by its members' mean, which a
# reader of 4 would serve as their median (files without it are still written as 4); 6: series
# served a blend of the network and seasonal naive (`naive_share`), which a reader of 5 would serve
# from the network alone (files without them are still written as 4 or 5); 7: series bounded at
# 0 on their own (`floor_series`), which a reader of 6 would forecast below 0; 8: series whose
# fallback is the last value (`naive_last`), which a reader of 7 would serve seasonal naive; 9: a
# network that reads only the newest part of its highway's window (`net_window`), which a reader of
# 8 would build with a head over the whole window and refuse as damaged; 10: segrnn members
# (`segments`), whose cell a reader of 9 does not know, and a weighted mean of the members
# (`member_weights`), which it would serve unweighted.
# An older reader refuses a newer file with "upgrade streamcast" instead of misreading it.
FORMAT_VERSION = 10
MEAN_OF_MEMBERS = 5
BLENDED_FALLBACK = 6
FLOORED_SERIES = 7
LAST_VALUE_FALLBACK = 8
NETWORK_WINDOW = 9
SEGMENT_MEMBERS = 10
WHOLE_FILE_CHECKSUM = 3
DEFAULT_MODEL_PATH = "model.streamcast"


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata alone, without building the network (for `streamcast info`)."""
    return metadata(read_file(path), path)


def tensor_bytes(raw: bytes) -> bytes:
    """What follows the header: the tensors' data."""
    size = int.from_bytes(raw[:8], "little")
    return raw[8 + size :]


def read_file(path: str | Path) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{str(p)!r} is a folder, not a model or state file: give the file's path")
    if not p.is_file():
        hint = (
            " (run `streamcast fit DATA` first, or pass -m/--model PATH)"
            if p.name == DEFAULT_MODEL_PATH
            else ""
        )
        raise ModelFileError(f"model file {str(p)!r} not found{hint}")
    return p.read_bytes()


def metadata(raw: bytes, path: str | Path) -> dict:
    """Parse the safetensors header by hand: a foreign file must fail with a clear message; then
    check the whole file's checksum and the metadata's schema."""
    problem = f"{path}: not a streamcast model file"
    try:
        meta = safefile.header(raw)
    except safefile.Damaged as exc:
        raise ModelFileError(f"{problem} ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(problem)
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelFileError(f"{problem} (format version {version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer streamcast (format {version}); upgrade streamcast to load it"
        )
    try:
        sealed = safefile.check(raw, meta, required=version >= WHOLE_FILE_CHECKSUM)
    except safefile.Damaged as exc:
        raise ModelFileError(
            f"{path}: the model file is damaged ({exc}); copy it again or fit a new one"
        ) from None
    expected = meta.get("tensors_sha256")  # format 1; files from before any checksum have none
    if not sealed and expected is not None and hashlib.sha256(tensor_bytes(raw)).hexdigest() != expected:
        raise ModelFileError(
            f"{path}: the model file is damaged (its weights do not match their checksum); "
            "copy it again or fit a new one"
        )
    try:
        validate(meta, ModelMeta)
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: the model file's header is invalid ({first_line(exc)}); copy it again or fit a new one"
        ) from None
    return meta
