"""One shard's share of a result as one part of a Parquet dataset, and the parts put back together.

`forecast --shard K/N -o OUT/` writes `OUT/part-K-of-N.parquet`; every part has the same columns
and types (an empty shard too), so polars (`pl.read_parquet("OUT/*.parquet")`), DuckDB
(`read_parquet('OUT/*.parquet')`) and Spark (`spark.read.parquet("OUT/")`) read them as one table.
Under torchrun (RANK and WORLD_SIZE set) each rank is one shard; no process group is needed, since
the shards share nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from streamcast.errors import UsageError
from streamcast.shards import Shard, parse_shard


def is_folder(output: str) -> bool:
    """`-o OUT/` asks for a part of a dataset, not for one file; the slash says so (a folder named
    like a file, `-o out.csv` by mistake, stays an error)."""
    return output.endswith(("/", os.sep))


PART_NAME = r"part-(\d+)-of-(\d+)\.parquet"


def part_path(folder: str | Path, shard: Shard) -> Path:
    """`folder/part-K-of-N.parquet`: the name says which part it is and how many make the whole."""
    return Path(folder) / f"part-{shard.index}-of-{shard.count}.parquet"


def lock_path(output: str) -> str:
    """The lock file of an output; a part's is hidden, as Spark and DuckDB skip `.` files in a dataset
    (the temporary file of an atomic write is hidden too)."""
    path = Path(output)
    if re.fullmatch(PART_NAME, path.name):
        return str(path.with_name(f".{path.name}.lock"))
    return f"{output}.lock"


def shard_from_env(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """The shard of this process under torchrun (its RANK of WORLD_SIZE), or None outside it."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    return parse_shard(f"{environ['RANK']}/{environ['WORLD_SIZE']}", "RANK/WORLD_SIZE")


def choose_shard(text: str | None, environ: Mapping[str, str] = os.environ) -> tuple[Shard | None, bool]:
    """The shard asked for with --shard, else torchrun's; and whether it came from torchrun."""
    if text is not None:
        return parse_shard(text), False
    shard = shard_from_env(environ)
    return shard, shard is not None


def output_for(output: str | None, shard: Shard | None, from_torchrun: bool) -> str:
    """Where a command writes: the part file for `-o OUT/`, else the path given (stdout: `-`).

    Ranks under torchrun would all write the same file or interleave on stdout: they need a folder.
    """
    if output and is_folder(output):
        return str(part_path(output, shard or Shard(0, 1)))
    if from_torchrun and shard is not None and shard.count > 1:
        raise UsageError(
            f"under torchrun each of the {shard.count} ranks writes one part: give -o a folder, e.g. -o out/"
        )
    return output or "-"


def make_dataset_folder(output: str | None) -> None:
    """`-o OUT/` names a dataset's folder: make that one folder, as Spark and DuckDB do when they
    write a dataset; a missing parent fails at once, as for any output."""
    if not (output and is_folder(output)):
        return
    folder = Path(output)
    if not folder.parent.is_dir():
        raise UsageError(
            f"cannot write to {output}: folder '{folder.parent}' does not exist; create it first "
            f"(mkdir -p {folder.parent})"
        )
    folder.mkdir(exist_ok=True)


def read_parts(folder: str | Path) -> list:
    """Every part of the dataset in `folder`, in part order, once checked that none is missing."""
    import polars as pl

    from streamcast.errors import DataError

    found = {}
    for path in sorted(Path(folder).glob("part-*-of-*.parquet")):
        match = re.fullmatch(PART_NAME, path.name)
        if match:
            found[(int(match[1]), int(match[2]))] = path
    counts = {n for _, n in found}
    if not found:
        raise DataError(f"no part-K-of-N.parquet files in {str(folder)!r}: give the folder the shards wrote")
    if len(counts) > 1:
        raise DataError(f"{str(folder)!r} mixes parts of {' and '.join(map(str, sorted(counts)))} shards")
    (count,) = counts
    missing = [k for k in range(count) if (k, count) not in found]
    if missing:
        raise DataError(
            f"part-{missing[0]}-of-{count}.parquet is missing from {str(folder)!r}: run that shard"
        )
    return [pl.read_parquet(found[(k, count)]) for k in range(count)]
