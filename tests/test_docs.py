"""Every command has help text with an example and a section in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamcast.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert f"streamcast {command}" in result.stdout  # the example


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_readme_section(command):
    assert f"### `streamcast {command}`" in README


def test_the_readme_lists_exactly_the_column_names_the_reader_detects():
    from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES

    block = README.split("<!-- detected names:")[1].split("<!-- end of detected names -->")[0]
    listed = dict(re.findall(r"^- (\w+): (.*)$", block, flags=re.M))
    assert listed == {
        kind: ", ".join(f"`{name}`" for name in names)
        for kind, names in (("id", ID_NAMES), ("time", TIME_NAMES), ("target", TARGET_NAMES))
    }


def test_the_readme_opens_with_the_two_commands():
    head = README[:1500]
    assert "make demo" in head and "make test" in head


def test_every_fit_option_is_documented():
    fit = main.commands["fit"]
    for param in fit.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert opt in README, f"{opt} is not in the README"


def test_the_readme_python_examples_run_in_order(tmp_path, monkeypatch):
    """The Python twins in the README are what users copy: run them all, in order, on the sample data."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 5
    (tmp_path / "sample_data").symlink_to(Path(__file__).parent.parent / "sample_data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert (tmp_path / "model.streamcast").exists()
    assert (tmp_path / "live.state").exists()
    assert (tmp_path / "scores.csv").read_text().startswith("scope,")
    assert namespace["frame"]["step"].to_list() == list(range(1, 49))
    assert (tmp_path / "meter_01.png").stat().st_size > 10_000
