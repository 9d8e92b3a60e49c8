"""An ensemble's members trained side by side, one process each (`fit --jobs`).

Members never talk to each other: each draws its weights and lane order from its own seed and
stops early on its own, so a process per member gives the very weights that training them one
after another gives, in less time where cores are free. Torch's own threads would not do this:
on shared cores they spin-wait for each other (`streamcast.threads`), while processes of one
thread each simply share the cores.

Processes are spawned, not forked: a forked child inherits the parent's locks and torch's thread
pools mid-state. A spawned child imports the caller's main module again, so a script that calls
`fit(..., jobs=2)` needs the usual `if __name__ == "__main__":` guard; the CLI has it. Each child
has a pipe of its own, so that one dying mid-message (the OOM killer) is an end of file, never a
read that waits for ever. The training data goes to the children as one temporary file, written
once: passed as the process's arguments it would go through a pipe the parent writes with the
child's end still open (a child that dies leaves the write waiting for ever), and torch's own
sharing goes through /dev/shm (64 MB in a default Docker container; a write past it is a SIGBUS).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass, replace
from logging.handlers import QueueHandler
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from streamcast.errors import StreamcastError
from streamcast.model import RecurrentForecaster
from streamcast.threads import check_jobs

POLL = 0.2  # seconds between looks at the children while none reports
GRACE = 2.0  # seconds after our Ctrl-C before the children still training are sent one
# "auto" spawns processes only for fits this long (rows x epochs of one member, about 20 s here):
# a child takes 1-2 s to import torch, which a short fit would not win back.
AUTO_FROM = 2_000_000
AUTO_MAX_COPY = 1 << 30  # bytes of training data each member's process copies, for "auto"

TrainOne = Callable[..., tuple[RecurrentForecaster, Any]]  # (plan, member, work, on_epoch, deadline)


def resolve_jobs(
    jobs: int | str | None, members: int, threads: int = 1, timesteps: int | None = None, copied: int = 0
) -> int:
    """How many members train at once: `jobs` itself, or for "auto" the cores other work leaves
    free (`busy_cores`) for `threads` torch threads each, at most one per member and at least
    one; one where a member's `timesteps` (rows x epochs) are too few to pay for starting a
    process, or where each process would copy more than `AUTO_MAX_COPY` bytes (`copied`)."""
    if jobs is None:
        return 1
    if jobs != "auto":
        return min(check_jobs(jobs), max(1, members))
    if members < 2 or (timesteps is not None and timesteps < AUTO_FROM) or copied > AUTO_MAX_COPY:
        return 1
    cores = usable_cores()
    free = cores - busy_cores(cores)
    return balanced_jobs(members, max(1, min(members, math.floor(free / max(1, threads) + 0.5))))


def balanced_jobs(members: int, slots: int) -> int:
    """The fewest processes, at least `slots`, that keep every slot busy to the end.

    With one process per slot, 3 members on 2 cores train in two rounds, the last member alone
    while a core idles: twice one member's time. Single-threaded processes share cores without
    the spin-waits of torch's threads, so 3 at once finish in 1.5 times one member's time (151 s
    against 190-202 s for M4's fit, README). Members run to `jobs` at a time, each starting as
    one ends, so only the last round can leave a slot idle: it cannot where it has no fewer
    members than slots (or none left over)."""
    if slots < 2:
        return slots  # a lone free core: no process to share it with the rest of the machine
    jobs = slots
    while members % jobs and members % jobs < slots:
        jobs += 1
    return min(jobs, members)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup's CPU quota (a
    container limited to 2 CPUs on a 64-core host sees 64 in the affinity)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota, period = limit.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


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


@dataclass
class _Child:
    process: Any
    reader: Connection
    reported: bool = False  # an epoch came back: it has weights worth keeping


@dataclass
class _Run:
    """The parent's side of a run: who is waiting, who runs, what came back."""

    waiting: list[tuple[int, Any]]
    running: dict[int, _Child] = field(default_factory=dict)
    done: dict[int, tuple[RecurrentForecaster, Any]] = field(default_factory=dict)
    interrupted: bool = False
    asked: bool = False  # a Ctrl-C came (set by the handler, applied by the loop)
    stop_at: float | None = None  # when to pass our Ctrl-C on to the children still running

    def interrupt(self) -> None:
        """Ctrl-C: no new member starts; the running ones are told after a grace period, since a
        terminal's Ctrl-C reaches them with us and a `kill -INT` of ours alone does not."""
        if not self.interrupted:
            self.stop_at = time.monotonic() + GRACE
        self.interrupted = True
        self.waiting.clear()


def train_in_processes(
    train_one: TrainOne,
    plans: list[Any],
    work: Any,
    on_epoch: Callable[[Any], None] | None,
    deadline: float | None,
    jobs: int,
) -> tuple[dict[int, tuple[RecurrentForecaster, Any]], bool]:
    """Train `plans` with at most `jobs` child processes at a time: {member index: (net, result)}
    for the members that ran, and whether a Ctrl-C ended the run.

    `train_one(plan, member, work, on_epoch, deadline)` runs in the child (a module-level
    function, so that the child can import it). Epochs reach `on_epoch` and log records this
    process's handlers as they come. As when members train in turn, a member starts only before
    the deadline (the first always); after a Ctrl-C no new member starts and the running ones
    keep their best weights. A member's error stops the others and is raised here.
    """
    context = mp.get_context("spawn")
    run = _Run(list(enumerate(plans)))
    try:
        holder = tempfile.TemporaryDirectory(prefix="streamcast-members-")
    except OSError as exc:
        raise NoRoom(f"no folder for the members' copy of the data: {exc}") from exc
    with holder as folder:
        shared = os.path.join(folder, "work.pickle")
        try:
            with open(shared, "wb") as file:
                pickle.dump(_portable(work), file, protocol=pickle.HIGHEST_PROTOCOL)  # (work, tensor names)
        except OSError as exc:
            raise NoRoom(f"no room for the members' copy of the data in {folder}: {exc}") from exc
        if hasattr(resource_tracker, "ensure_running"):
            # Started now, not with the first member: starting it unblocks Ctrl-C (`_ctrl_c_blocked`).
            resource_tracker.ensure_running()
        caught, previous, ignored = _catch_interrupts(run)
        settings = _Settings.now(ignored)
        try:
            while run.waiting or run.running:
                if run.asked and not run.interrupted:
                    run.interrupt()
                    # One started as the Ctrl-C came may have missed it, and would train an
                    # epoch in the grace period: told now, it stops with nothing, as the others do.
                    _signal({i: c for i, c in run.running.items() if not c.reported})
                _start_members(run, context, train_one, shared, deadline, jobs, settings)
                if not run.running:
                    break
                if run.stop_at is not None and time.monotonic() >= run.stop_at:
                    _signal(run.running)
                    run.stop_at = None
                members = {c.reader: index for index, c in run.running.items()}
                for ready in wait(list(members), timeout=POLL):
                    _take(run, members[ready], on_epoch, work.device)
        finally:
            for child in run.running.values():
                child.process.terminate()
                _end(child.process)
                child.reader.close()
            if caught:
                signal.signal(signal.SIGINT, previous)
    return run.done, run.interrupted


class NoRoom(OSError):
    """The members' copy of the training data could not be written (a full TMPDIR): `fit`
    trains them in turn instead."""


def _end(process, wait_for: float = 5.0) -> None:
    """Wait for a child to exit: one that will not is terminated, then killed."""
    process.join(wait_for)
    if process.exitcode is None:
        process.terminate()
        process.join(1.0)
    if process.exitcode is None:
        process.kill()
        process.join()


@dataclass(frozen=True)
class _Settings:
    """What of the parent's torch set-up decides the arithmetic, for the child to take on."""

    threads: int
    dtype: torch.dtype
    deterministic: bool
    log_level: int
    ignore_ctrl_c: bool  # the caller ignores SIGINT (a background job): so do the members

    @classmethod
    def now(cls, ignore_ctrl_c: bool) -> _Settings:
        return cls(
            torch.get_num_threads(),
            torch.get_default_dtype(),
            torch.are_deterministic_algorithms_enabled(),
            logging.getLogger("streamcast").getEffectiveLevel(),
            ignore_ctrl_c,
        )


def _catch_interrupts(run: _Run) -> tuple[bool, Any, bool]:
    """While the members train, Ctrl-C only marks the run (an exception could land mid-read of a
    member's weights); a second one stops at once, members and all. Only the main thread
    receives signals. A caller that ignores SIGINT, or handles it outside Python, keeps it.
    -> whether the handler was set, the one to put back, and whether SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread():
        return False, None, False
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:
        return False, None, previous is signal.SIG_IGN

    def handler(signum, frame) -> None:
        if run.asked:
            raise KeyboardInterrupt
        run.asked = True

    signal.signal(signal.SIGINT, handler)
    return True, previous, False


def _start_members(
    run: _Run, context, train_one, shared: str, deadline, jobs: int, settings: _Settings
) -> None:
    """Start members while there are free places (and time left). `shared`: the file that holds
    the training data for every member to read, written once."""
    while run.waiting and len(run.running) < jobs and not run.asked:
        if deadline is not None and (run.done or run.running) and time.monotonic() >= deadline:
            run.waiting.clear()
            return
        index, plan = run.waiting.pop(0)
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_member_process,
            args=(train_one, plan, index + 1, shared, deadline, settings, writer),
            name=f"streamcast-member-{index + 1}",
            daemon=True,
        )
        # Started with Ctrl-C blocked, which the child keeps through exec and Python's start-up
        # until its own handler is set (one while it still imported torch killed it without a
        # word); ours waits meanwhile, and is taken when we unblock.
        try:
            with _ctrl_c_blocked():
                process.start()
        except BaseException:
            reader.close()
            raise
        finally:
            writer.close()  # the child's end: ours closed, its death reads as the end of the pipe
        run.running[index] = _Child(process, reader)


@contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _take(run: _Run, index: int, on_epoch, device) -> None:
    """One message from member `index`: an epoch, a log record, its weights or its error."""
    child = run.running[index]
    try:
        kind, payload = child.reader.recv()
    except (EOFError, OSError):
        _retire(run, index)
        if run.interrupted:
            return  # stopped by the Ctrl-C before it had anything to send
        raise RuntimeError(
            f"member {index + 1}'s training process ended with exit code {child.process.exitcode} "
            "before it reported; train with --jobs 1 to see why"
        ) from None
    if kind == "log":  # the member's own log lines, to this process's handlers
        logging.getLogger(payload.name).handle(payload)
    elif kind == "epoch":
        child.reported = True
        if on_epoch is not None:
            on_epoch(payload)
    else:
        _retire(run, index)
        if kind == "error":
            error, where = payload
            if isinstance(error, StreamcastError):
                raise error  # the user's to fix: one line, as in one process
            raise error from ChildTraceback(where)
        if kind == "done":
            config, weights, result = payload
            net = RecurrentForecaster(config)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            run.done[index] = (net.to(device).eval(), result)
            if result.interrupted:
                run.interrupt()
        else:  # "interrupted": before its first epoch, nothing to keep
            run.interrupt()


def _retire(run: _Run, index: int) -> None:
    """Member `index` has said its last (or died): wait for its process and close its pipe."""
    child = run.running.pop(index)
    _end(child.process)
    child.reader.close()


def _signal(running: dict[int, _Child]) -> None:
    for child in running.values():
        if child.process.pid is not None and child.process.exitcode is None:
            os.kill(child.process.pid, signal.SIGINT)


def _member_process(
    train_one: TrainOne,
    plan,
    member: int,
    shared: str,
    deadline: float | None,
    settings: _Settings,
    writer: Connection,
) -> None:
    """The child: train one member as the parent would and send back its weights (as numpy
    arrays, so nothing of this process must outlive it), its epochs and its log records."""
    signal.signal(signal.SIGINT, signal.SIG_IGN if settings.ignore_ctrl_c else _interrupt)
    try:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one meanwhile lands here
        with open(shared, "rb") as file:
            work = _restored(*pickle.load(file))
        torch.set_num_threads(settings.threads)
        torch.set_default_dtype(settings.dtype)
        torch.use_deterministic_algorithms(settings.deterministic)
        logger = logging.getLogger("streamcast")
        logger.setLevel(settings.log_level)
        logger.addHandler(_Forward(writer))
        logger.propagate = False
        net, result = train_one(plan, member, work, lambda stats: writer.send(("epoch", stats)), deadline)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # trained: a Ctrl-C now must not cut the reply short
        weights = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        writer.send(("done", (net.config, weights, result)))
    except KeyboardInterrupt:  # before its first epoch: nothing to keep
        writer.send(("interrupted", None))
    except BaseException as exc:  # noqa: BLE001 - every failure is the parent's to raise
        writer.send(("error", (_sendable(exc), "".join(traceback.format_exception(exc)))))
    finally:
        writer.close()


def _portable(work: Any) -> tuple[Any, tuple[str, ...]]:
    """`work` with its tensors as numpy arrays, for plain pickling (not torch's shared memory),
    and the names of the fields that were tensors."""
    if not is_dataclass(work):
        return work, ()
    tensors = {f.name: v for f in fields(work) if isinstance(v := getattr(work, f.name), torch.Tensor)}
    return replace(work, **{k: v.numpy() for k, v in tensors.items()}), tuple(tensors)


def _restored(work: Any, tensors: tuple[str, ...]) -> Any:
    """The child's `work`: the fields `_portable` made arrays are tensors again (no copy)."""
    return replace(work, **{k: torch.from_numpy(getattr(work, k)) for k in tensors}) if tensors else work


def work_bytes(work: Any) -> int:
    """What a member's process copies of `work`: the bytes of its tensors and arrays."""
    if not is_dataclass(work):
        return 0
    total = 0
    for f in fields(work):
        value = getattr(work, f.name)
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, np.ndarray):
            total += value.nbytes
        elif is_dataclass(value):
            total += work_bytes(value)
    return total


class _Forward(QueueHandler):
    """Sends a child's log records to the parent, which hands them to its own handlers."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.send(("log", record))


def _interrupt(signum, frame) -> None:
    """Ctrl-C stops the training, which keeps its best weights. Every one raises until the training
    has returned (SIGINT is then ignored, so the reply is not cut short): one that lands in a
    `__del__` or a callback is swallowed there, and the parent's, passed on after its grace
    period, must then stop the member rather than find it deaf."""
    raise KeyboardInterrupt


class ChildTraceback(Exception):
    """Where in a member's process an error was raised: its traceback, as text."""


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself where it survives pickling, else one of the same kind that does (an
    exception whose constructor takes other arguments)."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        if isinstance(exc, StreamcastError):
            same = StreamcastError(str(exc))
            same.exit_code = exc.exit_code
            return same
        return RuntimeError(f"{type(exc).__name__}: {exc}")
