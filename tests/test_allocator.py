"""`stream`'s process keeps the memory its batches free (`streamcast.allocator`): glibc's thresholds
are taken, polars' jemalloc is told before polars loads, and a user's own setting is left alone."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from click.testing import CliRunner

from streamcast import allocator
from streamcast.cli import main

PROBE = """
import json, os, sys
{before}
from streamcast.allocator import POLARS_JEMALLOC, keep_freed_memory
took = keep_freed_memory()
print(json.dumps({{"took": took, "again": keep_freed_memory(), "conf": os.environ.get(POLARS_JEMALLOC[0])}}))
"""


def probe(before: str = "", env: dict | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != allocator.POLARS_JEMALLOC[0]}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        capture_output=True,
        text=True,
        check=True,
        env={**environment, **(env or {})},
    )
    return json.loads(done.stdout)


glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


@glibc
def test_glibc_takes_the_thresholds_and_polars_is_told_before_it_loads():
    got = probe()
    assert got == {"took": True, "again": True, "conf": allocator.POLARS_JEMALLOC[1]}


def test_polars_already_loaded_or_a_users_own_setting_is_left_as_it_was():
    assert probe("import polars")["conf"] != allocator.POLARS_JEMALLOC[1]  # too late: polars' own stays
    mine = "dirty_decay_ms:0"
    assert probe(env={allocator.POLARS_JEMALLOC[0]: mine})["conf"] == mine


def test_elsewhere_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is False
    finally:
        allocator.keep_freed_memory.cache_clear()


def test_the_stream_command_sets_them_once(model_path, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("set") or True)
    result = CliRunner().invoke(main, ["stream", "-m", str(model_path), "-q"], input="")
    assert result.exit_code == 0, result.output
    assert calls == ["set"]
