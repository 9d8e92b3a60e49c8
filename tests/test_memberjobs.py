"""`fit --jobs`: an ensemble's members trained side by side in child processes give the model
that training them in turn gives, report every epoch, stop on Ctrl-C with their best weights and
pass a member's error on."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import streamcast
from streamcast import memberjobs
from streamcast.cli import main
from streamcast.errors import DataError, StreamcastError, StrictStop, UsageError
from streamcast.training import fit
from tests.conftest import TINY, diverging_data, hourly_frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_members_trained_in_processes_have_the_weights_of_members_trained_in_turn(tiny_data, caplog):
    config = replace(TINY, ensemble=3)
    in_turn, side_by_side = [], []
    one = fit(tiny_data, config, on_epoch=in_turn.append, jobs=1)
    with caplog.at_level(logging.INFO, logger="streamcast"):
        two = fit(tiny_data, config, on_epoch=side_by_side.append, jobs=2)
    # Each member's epochs were logged by a process of its own, not by this one.
    makers = {
        r.getMessage().split(" epoch ")[0]: r.process for r in caplog.records if " epoch " in r.getMessage()
    }
    assert set(makers) == {"member 1", "member 2", "member 3"}
    assert os.getpid() not in makers.values() and len(set(makers.values())) == 3
    a, b = one.net.state_dict(), two.net.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    key = lambda s: (s.member, s.epoch, s.val_loss)  # noqa: E731
    assert sorted(map(key, side_by_side)) == sorted(map(key, in_turn))
    assert {s.member for s in side_by_side} == {1, 2, 3}
    assert (one.info["jobs"], two.info["jobs"]) == (1, 2)
    assert [m["best_epoch"] for m in two.info["members"]] == [m["best_epoch"] for m in one.info["members"]]


def test_a_members_error_in_its_process_is_raised_in_the_caller():
    data = diverging_data()
    with pytest.raises(DataError, match="training diverged: no epoch gave a finite validation loss"):
        fit(data, replace(TINY, batch_size=1, ensemble=2), jobs=2)


def test_auto_takes_the_cores_other_work_leaves_free_and_one_for_a_short_fit(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    long = memberjobs.AUTO_FROM
    # Three members on two free cores all start: two rounds would leave a core idle for the last.
    for busy, members, expected in [
        (0.2, 3, 3),
        (0.2, 4, 2),
        (0.6, 3, 1),
        (1.3, 3, 1),
        (0.0, 1, 1),
        (0.0, 2, 2),
    ]:
        monkeypatch.setattr(memberjobs, "busy_cores", lambda cores, busy=busy: busy)
        assert memberjobs.resolve_jobs("auto", members, 1, long) == expected, (busy, members)
    monkeypatch.setattr(memberjobs, "busy_cores", lambda cores: 0.0)
    assert memberjobs.resolve_jobs("auto", 3, 1, long - 1) == 1  # not worth a process's start
    assert memberjobs.resolve_jobs("auto", 3, 2, long) == 1  # two threads each fill both cores
    assert memberjobs.resolve_jobs(8, 3) == 3  # never more processes than members
    assert memberjobs.resolve_jobs("auto", 3, 1, long, memberjobs.AUTO_MAX_COPY + 1) == 1  # too much to copy
    for bad in (0, "0", "two"):
        with pytest.raises(UsageError, match="--jobs must be"):
            memberjobs.resolve_jobs(bad, 3)


def test_balanced_jobs_keep_every_slot_busy_in_the_last_round():
    # (members, free slots) -> processes: the fewest at least `slots` whose last round fills them.
    cases = {(3, 2): 3, (4, 2): 2, (5, 2): 3, (7, 2): 4, (63, 2): 3, (9, 4): 5, (2, 4): 2, (3, 1): 1}
    for (members, slots), expected in cases.items():
        jobs = memberjobs.balanced_jobs(members, min(members, slots))
        assert jobs == expected, (members, slots)
        left = members % jobs
        assert left == 0 or left >= min(members, slots)


def test_busy_cores_counts_a_spinning_process(tmp_path):
    cores = len(os.sched_getaffinity(0))
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = memberjobs.busy_cores(cores, sample=0.5)
    finally:
        spin.kill()
        spin.wait()
    assert 0.6 <= busy <= cores


def test_fit_jobs_through_the_cli_and_info_says_so(tmp_path):
    csv = tmp_path / "load.csv"
    hourly_frame(series=2, length=120).write_csv(csv)
    out = tmp_path / "m.streamcast"
    fast = ["--hidden", "8", "--epochs", "2", "--horizon", "6", "--bptt", "16", "-q"]
    result = CliRunner().invoke(
        main, ["fit", str(csv), "-o", str(out), "--ensemble", "2", "--jobs", "2", *fast]
    )
    assert result.exit_code == 0, result.output
    assert "members 2 at a time in their own processes" in CliRunner().invoke(main, ["info", str(out)]).stdout
    assert streamcast.load(out).info["jobs"] == 2
    bad = CliRunner().invoke(
        main, ["fit", str(csv), "-o", str(tmp_path / "x.streamcast"), "--jobs", "0", *fast]
    )
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == ["Error: --jobs must be at least 1 (processes); got 0"]
    assert not (tmp_path / "x.streamcast").exists()


def _long_fit_of_two(tmp_path, out, *more: str) -> subprocess.Popen:
    """`fit` of two members, two at a time, that would run for ever: in a session of its own, so
    that a signal to its process group is a terminal's Ctrl-C."""
    csv = tmp_path / "load.csv"
    hourly_frame(series=3, length=400).write_csv(csv)
    args = ["--hidden", "8", "--horizon", "6", "--bptt", "16", "--epochs", "100000", *more]
    return _in_its_own_session(
        [
            sys.executable,
            "-m",
            "streamcast",
            "fit",
            str(csv),
            "-o",
            str(out),
            "--ensemble",
            "2",
            "--jobs",
            "2",
            *args,
        ]
    )


def _in_its_own_session(command: list[str]) -> subprocess.Popen:
    """A process in a session of its own: a signal to its group is what a terminal's Ctrl-C is.
    Its Ctrl-C is a terminal's too: a test run started in the background (`pytest &` in a script)
    ignores SIGINT, which a child inherits, and `fit` would rightly ignore it as well."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CI": "true"},
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("whom", ["group", "parent"])
def test_ctrl_c_stops_members_in_their_processes_and_keeps_their_best(tmp_path, whom):
    """A terminal's Ctrl-C reaches the whole process group; `kill -INT` of the parent alone is
    passed on to the members after a grace period. Either way every member keeps its best."""
    out = tmp_path / "m.streamcast"
    proc = _long_fit_of_two(tmp_path, out, "--patience", "100000")
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while seen != {"member 1/2 epoch 2", "member 2/2 epoch 2"} and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"fit ended early: {proc.wait()}"
        seen.update(m for m in ("member 1/2 epoch 2", "member 2/2 epoch 2") if line.startswith(m + " "))
    if whom == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    info = json.loads(CliRunner().invoke(main, ["info", str(out), "--json"]).stdout)["info"]
    assert info["interrupted"] is True
    assert len(info["members"]) == 2
    assert all(m["best_epoch"] >= 1 for m in info["members"])


def test_members_in_processes_log_their_epochs_here(tiny_data, caplog):
    with caplog.at_level(logging.INFO, logger="streamcast"):
        fit(tiny_data, replace(TINY, ensemble=2), jobs=2)
    messages = [r.getMessage() for r in caplog.records]
    assert "training 2 members at a time, each in its own process" in messages
    for member in (1, 2):
        assert sum(m.startswith(f"member {member} epoch ") for m in messages) == TINY.epochs


def _dies(plan, member, work, on_epoch, deadline):
    os._exit(3)


def _bug(plan, member, work, on_epoch, deadline):
    raise ZeroDivisionError("a bug in the member's process")


def _user_error(plan, member, work, on_epoch, deadline):
    raise StrictStop(7, "a user's mistake")


WORK = SimpleNamespace(device=torch.device("cpu"))


def test_a_member_process_that_dies_without_a_word_is_an_error_not_a_hang():
    with pytest.raises(
        RuntimeError, match="member 1's training process ended with exit code 3 before it reported"
    ):
        memberjobs.train_in_processes(_dies, ["plan"], WORK, None, None, 1)


def test_a_bug_in_a_member_keeps_its_traceback_and_a_users_error_stays_one_line():
    with pytest.raises(ZeroDivisionError, match="a bug in the member's process") as raised:
        memberjobs.train_in_processes(_bug, ["plan"], WORK, None, None, 1)
    assert isinstance(raised.value.__cause__, memberjobs.ChildTraceback)
    assert "in _bug" in str(raised.value.__cause__)
    with pytest.raises(StreamcastError, match="line 7: a user's mistake") as raised:
        memberjobs.train_in_processes(_user_error, ["plan"], WORK, None, None, 1)
    assert raised.value.exit_code == 1 and raised.value.__cause__ is None


def _deaf_to_the_first_ctrl_c(plan, member, work, on_epoch, deadline):
    """The member's first Ctrl-C lands where Python swallows it (a `__del__`, a callback)."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass  # swallowed
    os.kill(os.getppid(), signal.SIGINT)  # `kill -INT` of the parent alone: passed on after 2 s
    time.sleep(30)
    os._exit(5)  # still training: the parent's Ctrl-C did not reach it


def test_a_member_that_swallowed_one_ctrl_c_still_stops_at_the_next():
    # As from a terminal: a test run started in the background ignores SIGINT, and so would fit.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        done, interrupted = memberjobs.train_in_processes(
            _deaf_to_the_first_ctrl_c, ["plan"], WORK, None, None, 1
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (done, interrupted) == ({}, True)
    assert time.monotonic() - started < 25


def test_no_member_starts_after_a_ctrl_c():
    """A Ctrl-C landing between two starts: the next member must not start and train unasked."""
    run = memberjobs._Run([(0, "plan 1"), (1, "plan 2")])
    run.asked = True
    memberjobs._start_members(run, None, _dies, "unused", None, 2, None)
    assert run.running == {} and len(run.waiting) == 2


def _children(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as listed:
        return listed.read().split()


@pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"), reason="Linux /proc"
)
def test_ctrl_c_while_members_start_exits_130_with_one_line(tmp_path):
    """The members' processes are still importing torch: the signal waits for their handler."""
    proc = _long_fit_of_two(tmp_path, tmp_path / "m.streamcast", "-q")
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert len(_children(proc.pid)) >= 2  # the members (and multiprocessing's resource tracker)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == "Error: training was interrupted before the first epoch finished; nothing to keep"
    )


def test_the_training_data_reaches_a_member_as_plain_arrays_not_shared_memory(tiny_data):
    """torch would share its tensors through /dev/shm (64 MB in a default Docker container)."""
    from streamcast.training import prepare

    work = prepare(tiny_data, TINY).work
    portable, tensors = memberjobs._portable(work)
    assert not any(isinstance(getattr(portable, f), torch.Tensor) for f in vars(portable))
    back = memberjobs._restored(portable, tensors)
    for name in ("table", "values", "val_targets"):
        assert isinstance(getattr(back, name), torch.Tensor)
        assert torch.equal(getattr(back, name), getattr(work, name))
    assert memberjobs.work_bytes(work) >= work.table.numel() * 4 + work.lanes.rows.nbytes


def test_no_room_for_the_members_data_trains_them_in_turn(tiny_data, monkeypatch, caplog):
    config = replace(TINY, ensemble=2)
    in_turn = fit(tiny_data, config, jobs=1)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(memberjobs.pickle, "dump", full_disk)
    with caplog.at_level(logging.WARNING, logger="streamcast"):
        fallback = fit(tiny_data, config, jobs=2)
    assert any(
        "No space left on device" in r.getMessage() and "in turn" in r.getMessage() for r in caplog.records
    )
    assert fallback.info["jobs"] == 1
    a, b = in_turn.net.state_dict(), fallback.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_auto_records_how_many_candidates_trained_at_once(tiny_data):
    from streamcast.autofit import fit_auto

    model = fit_auto(tiny_data, TINY, time_budget=60, jobs=2)
    assert len(model.info["auto"]["tried"]) >= 2
    assert model.info["jobs"] == 2


def test_a_fit_that_ignores_ctrl_c_keeps_ignoring_it_with_members_side_by_side(tmp_path):
    """A background job in a script ignores SIGINT; `--jobs` must not start heeding it."""
    csv = tmp_path / "load.csv"
    hourly_frame(series=3, length=400).write_csv(csv)
    out = tmp_path / "m.streamcast"
    argv = ["streamcast", "fit", str(csv), "-o", str(out), "--ensemble", "2", "--jobs", "2", "--hidden", "8"]
    argv += ["--horizon", "6", "--bptt", "16", "--epochs", "4", "--patience", "10"]
    code = f"import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.argv = {argv!r}; "
    code += "from streamcast.cli import main; main()"
    proc = _in_its_own_session([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"fit ended early: {proc.wait()}"
        if " epoch 1 " in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    info = streamcast.load(out).info
    assert info["interrupted"] is False
    assert [len(m["history"]) for m in info["members"]] == [4, 4]
