"""The torchrun job a process belongs to, and the few collectives data-parallel `fit` needs.

torchrun (PyTorch's own launcher) starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK;
streamcast never schedules anything itself. One process (plain `fit`, or torchrun with one process)
has no cluster at all, so it runs exactly the single-process code and gives the same model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from streamcast.errors import StreamcastError, UsageError, first_line

TIMEOUT_ENV = "STREAMCAST_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600  # seconds a collective waits for a silent rank before this one gives up


@dataclass(frozen=True)
class Cluster:
    """This process's place in a data-parallel job; collectives run on `device`."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints progress and writes files."""
        return self.rank == 0

    def sum(self, values: Any) -> np.ndarray:
        """Element-wise sum over all ranks, in float64."""
        return self._reduce(values, dist.ReduceOp.SUM)

    def min(self, values: Any) -> np.ndarray:
        return self._reduce(values, dist.ReduceOp.MIN)

    def max(self, values: Any) -> np.ndarray:
        return self._reduce(values, dist.ReduceOp.MAX)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all ranks in place (the per-step gradient exchange)."""
        self._talk(dist.all_reduce, tensor)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (small things: ids, lengths, scales)."""
        out: list[Any] = [None] * self.world_size
        self._talk(dist.all_gather_object, out, obj)
        return out

    @contextmanager
    def together(self) -> Iterator[None]:
        """Run a block without collectives in which some ranks may meet a user error, then tell
        every rank: the rank that failed raises its own error, the others a PeerFailed naming it,
        so that no rank waits for one that has left."""
        error: StreamcastError | None = None
        try:
            yield
        except StreamcastError as exc:
            error = exc
        failed = [r for r, bad in enumerate(self.gather(error is not None)) if bad]
        if error is not None:
            raise error
        if failed:
            raise PeerFailed(
                f"rank {self.rank} of {self.world_size}: stopped, as rank {failed[0]} failed (see its error)"
            )

    def _reduce(self, values: Any, op: dist.ReduceOp) -> np.ndarray:
        t = torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).clone()
        self._talk(dist.all_reduce, t, op=op)
        return t.cpu().numpy()

    def _talk(self, collective: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A collective; a rank that died or went silent (timeout) ends it with one clear line."""
        try:
            collective(*args, **kwargs)
        except RuntimeError as exc:
            raise PeerFailed(
                f"rank {self.rank} of {self.world_size}: lost another rank ({first_line(exc)[:200]}); "
                "see the other ranks' errors"
            ) from None


class PeerFailed(StreamcastError):
    """Another rank of the job failed or went silent: this one stops too."""


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    try:
        return (
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError:
        raise UsageError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)"
        ) from None


def timeout_seconds() -> int:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = int(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UsageError(f"{TIMEOUT_ENV}={text!r}: give the seconds a rank may wait for the others (>= 1)")
    return seconds


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """One GPU per process on a machine: `cuda` means the GPU numbered by torchrun's LOCAL_RANK."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


@contextmanager
def joined(device: torch.device) -> Iterator[Cluster | None]:
    """Join the torchrun job this process was started in (None when it runs alone), and leave it
    at the end. gloo on the CPU, NCCL on GPUs; a rank that goes silent stops the others after
    STREAMCAST_DIST_TIMEOUT seconds (600) instead of hanging them."""
    rank, world, local_rank = world_from_env()
    if world <= 1:
        yield None
        return
    device = rank_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    try:
        yield Cluster(rank, world, local_rank, device)
        # Leave together: a rank that tore down its gloo pairs while a peer still held them once
        # aborted that peer ("terminate called without an active exception") in the test suite.
        dist.barrier()
    finally:
        dist.destroy_process_group()
