"""An ensemble's members trained side by side, one process each (`fit --jobs`).

Members never talk to each other: each draws its weights and lane order from its own seed and
stops early on its own, so a process per member gives the very weights that training them one
after another gives, in less time where cores are free. Torch's own threads would not do this:
on shared cores they spin-wait for each other (`streamcast.threads`), while processes of one
thread each simply share the cores.

Processes are spawned, not forked: a forked child inherits the parent's locks and torch's thread
pools mid-state. A spawned child imports the caller's main module again, so a script that calls
`fit(..., jobs=2)` needs the usual `if __name__ == "__main__":` guard; the CLI has it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import queue
import signal
import time
from collections.abc import Callable
from logging.handlers import QueueHandler
from typing import Any

import torch
import torch.multiprocessing as mp

from streamcast.errors import UsageError
from streamcast.model import RecurrentForecaster

POLL = 0.2  # seconds between looks at the children while none reports
GRACE = 2.0  # seconds after our Ctrl-C before the children still training are sent one


# "auto" spawns processes only for fits this long (rows x epochs of one member, about 20 s here):
# a child takes 1-2 s to import torch, which a short fit would not win back.
AUTO_FROM = 2_000_000


def resolve_jobs(jobs: int | str | None, members: int, threads: int = 1, timesteps: int | None = None) -> int:
    """How many members train at once: `jobs` itself, or for "auto" the cores other work leaves
    free (`busy_cores`) for `threads` torch threads each, at most one per member and at least
    one; one where a member's `timesteps` (rows x epochs) are too few to pay for starting a
    process."""
    if jobs is None:
        return 1
    if jobs == "auto":
        if members < 2 or (timesteps is not None and timesteps < AUTO_FROM):
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        free = cores - busy_cores(cores)
        return max(1, min(members, math.floor(free / max(1, threads) + 0.5)))
    if isinstance(jobs, str):
        try:
            jobs = int(jobs)
        except ValueError:
            raise UsageError(f"--jobs must be a whole number or auto; got {jobs!r}") from None
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (processes); got {jobs}")
    return min(jobs, max(1, members))


def busy_cores(cores: int, sample: float = 0.25) -> float:
    """How many of `cores` other work keeps busy: the machine's CPU time over `sample` seconds
    (Linux's /proc/stat), else the 1-minute load average. Measured, because the load average
    misleads: on the 2-core virtual machines this project runs on it reads about 1 while both
    cores are idle (a kernel thread waiting counts)."""
    try:
        first = _cpu_times()
        time.sleep(sample)
        second = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])  # idle and iowait
    return cores * (total - idle) / total if total > 0 else 0.0


def _cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:9]]


def train_in_processes(
    train_one: Callable,
    plans: list,
    work: Any,
    on_epoch: Callable | None,
    deadline: float | None,
    jobs: int,
) -> tuple[dict[int, tuple[RecurrentForecaster, Any]], bool]:
    """Train `plans` with at most `jobs` child processes at a time: {member index: (net, result)}
    for the members that ran, and whether a Ctrl-C ended the run.

    `train_one(plan, member, work, on_epoch, deadline)` runs in the child (a module-level
    function, so that the child can import it). Epochs reach `on_epoch` here, in the order they
    end. As when members train in turn, a member starts only before the deadline (the first
    always); after a Ctrl-C no new member starts and the running ones keep their best weights.
    A member's error stops the others and is raised here.
    """
    context = mp.get_context("spawn")
    reports = context.Queue()
    threads = torch.get_num_threads()
    level = logging.getLogger("streamcast").getEffectiveLevel()
    waiting = list(enumerate(plans))
    running: dict[int, Any] = {}
    done: dict[int, tuple[RecurrentForecaster, Any]] = {}
    interrupted, stop_at, dead_since = False, None, {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs and not interrupted:
                if deadline is not None and (done or running) and time.monotonic() >= deadline:
                    waiting.clear()
                    break
                index, plan = waiting.pop(0)
                child = context.Process(
                    target=_member_process,
                    args=(train_one, plan, index + 1, work, deadline, threads, reports, level),
                    name=f"streamcast-member-{index + 1}",
                    daemon=True,
                )
                child.start()
                running[index] = child
            if not running:
                break
            if stop_at is not None and time.monotonic() >= stop_at:
                _interrupt(running)  # Ctrl-C reaches them with us; a `kill -INT` of ours alone does not
                stop_at = None
            try:
                kind, member, payload = reports.get(timeout=POLL)
            except queue.Empty:
                _check_alive(running, dead_since)
                continue
            except KeyboardInterrupt:
                interrupted = True
                waiting.clear()
                stop_at = time.monotonic() + GRACE
                continue
            if kind == "log":  # the member's own log lines, to this process's handlers
                logging.getLogger(payload.name).handle(payload)
                continue
            if kind == "epoch":
                try:
                    if on_epoch is not None:
                        on_epoch(payload)
                except KeyboardInterrupt:  # Ctrl-C while the progress was drawn: as above
                    interrupted, stop_at = True, time.monotonic() + GRACE
                    waiting.clear()
                continue
            running.pop(member - 1).join()
            if kind == "interrupted":
                interrupted = True
                waiting.clear()
                continue
            if kind == "error":
                raise payload
            config, weights, result = payload
            net = RecurrentForecaster(config)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            done[member - 1] = (net.to(work.device).eval(), result)
            interrupted = interrupted or result.interrupted
            if result.interrupted:
                waiting.clear()
    finally:
        for child in running.values():
            child.terminate()
            child.join()
        reports.close()
    return done, interrupted


def _interrupt(running: dict[int, Any]) -> None:
    for child in running.values():
        if child.pid is not None and child.exitcode is None:
            os.kill(child.pid, signal.SIGINT)


def _check_alive(running: dict[int, Any], dead_since: dict[int, float]) -> None:
    """A child that died without a word (killed, out of memory) is an error, not a hang. One that
    has just ended may still have its report in the pipe: it gets a few more looks first."""
    for index, child in running.items():
        if child.exitcode is None:
            continue
        if time.monotonic() - dead_since.setdefault(index, time.monotonic()) > 5 * POLL:
            raise RuntimeError(
                f"member {index + 1}'s training process ended with exit code {child.exitcode} "
                "before it reported; train with --jobs 1 to see why"
            )


def _member_process(train_one, plan, member, work, deadline, threads, reports, level) -> None:
    """The child: train one member on the parent's thread count and send back its weights (as
    numpy arrays, so nothing of this process must outlive it) and its log records."""
    signal.signal(signal.SIGINT, _first_interrupt)
    logger = logging.getLogger("streamcast")
    logger.setLevel(level)
    logger.addHandler(_Forward(reports))
    logger.propagate = False
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
    try:
        net, result = train_one(
            plan, member, work, lambda stats: reports.put(("epoch", member, stats)), deadline
        )
        weights = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        reports.put(("done", member, (net.config, weights, result)))
    except KeyboardInterrupt:  # before its first epoch: nothing to keep
        reports.put(("interrupted", member, None))
    except BaseException as exc:  # noqa: BLE001 - every failure is the parent's to raise
        reports.put(("error", member, _sendable(exc)))


class _Forward(QueueHandler):
    """Sends a child's log records to the parent, which hands them to its own handlers."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(("log", 0, record))


def _first_interrupt(signum, frame) -> None:
    """The first Ctrl-C stops the training (which keeps its best weights); a second one, the
    parent's passed on after ours reached the whole group, must not cut the reply short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself where it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")
