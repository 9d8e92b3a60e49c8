"""Every command has help text with an example and a section in the README."""

from __future__ import annotations

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


def test_the_readme_opens_with_the_two_commands():
    head = README[:1500]
    assert "make demo" in head and "make test" in head


def test_every_fit_option_is_documented():
    fit = main.commands["fit"]
    for param in fit.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert opt in README, f"{opt} is not in the README"
