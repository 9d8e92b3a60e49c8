"""The CLI starts without torch: `--help`, `--version`, `info` and usage errors answer at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODEL = Path(__file__).parent / "data" / "tiny-v1.streamcast"

# Runs the CLI in a fresh interpreter, then says which heavy modules it loaded.
PROBE = """
import sys
from streamcast.cli import main
sys.argv = ["streamcast", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("LOADED", sorted(m for m in ("torch", "polars", "numpy") if m in sys.modules), code, file=sys.stderr)
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def loaded(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("LOADED"))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["stream", "--help"], ["fit", "--help"], ["info", str(MODEL)]],
    ids=["help", "version", "stream-help", "fit-help", "info"],
)
def test_cli_answers_without_importing_torch(args):
    result = run_cli(*args)
    assert "torch" not in loaded(result)
    assert loaded(result).endswith(" 0")  # exit code 0
    assert result.stdout.strip()


def test_info_reads_the_header_without_polars_or_numpy():
    result = run_cli("info", "--json", str(MODEL))
    assert loaded(result) == "LOADED [] 0"
    assert '"format": "streamcast-model"' in result.stdout


def test_a_usage_error_answers_without_importing_torch():
    result = run_cli("stream", "--every", "x")
    assert "torch" not in loaded(result)
    assert "Invalid value for '--every'" in result.stderr
    assert loaded(result).endswith(" 2")


def test_public_api_still_imports_by_name():
    code = (
        "import sys, streamcast\n"
        "assert 'torch' not in sys.modules\n"
        "from streamcast import stream, StreamState, Forecaster, fit, load, Observations\n"
        "import streamcast.stream.session, streamcast.backtest\n"
        "assert streamcast.stream is stream and callable(stream) and stream.__module__.endswith('engine')\n"
        "assert callable(streamcast.backtest) and streamcast.backtest.__name__ == 'backtest'\n"
        "assert sorted(streamcast.__all__) == sorted(n for n in dir(streamcast) if n in streamcast.__all__)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout == "ok\n", result.stderr


def test_stream_states_and_their_files_are_kept_without_importing_torch():
    code = (
        "import sys\n"
        "import streamcast.safefile, streamcast.stream.state, streamcast.stream.watch\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout == "['numpy']\n", result.stderr
