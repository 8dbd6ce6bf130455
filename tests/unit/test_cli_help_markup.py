"""Every help text of every command shows its square brackets: the help is rich console markup,
where "[postgres]" would be read as a style and vanish (`herder master --help` once showed
"(needs herder)"). Imports herder.cli and typer (which carries its own click)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from herder.cli import app

runner = CliRunner()
#: a bracketed span as a help text shows it
BRACKETS = re.compile(r"\[[^\[\]]*\]")


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(path, command) of every command and group under `group` (a click group), the root
    included."""
    yield " ".join(path), group
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield from commands(command, (*path, name))


def help_texts(command: Any) -> list[str]:
    """The help texts written in the source for a command and its options, as shown: rich
    markup's escape "\\[" shows as "["."""
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    return [t.replace("\\[", "[") for t in texts if t]


COMMANDS = dict(commands(typer.main.get_command(app)))
#: rich wraps to the terminal's width: wide enough that no word is cut
WIDE = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}


def squeezed(text: str) -> str:
    """Without whitespace nor the panels' borders, which rich's wrapping moves around."""
    return re.sub(r"[\s│╭╮╰╯─]", "", text)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: p or "herder")
def test_every_bracket_of_a_help_text_shows(path: str) -> None:
    result = runner.invoke(app, [*path.split(), "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    shown = squeezed(result.output)
    for text in help_texts(COMMANDS[path]):
        for span in BRACKETS.findall(text):
            assert squeezed(span) in shown, (span, result.output)


def test_the_store_option_names_the_extra_it_needs() -> None:
    result = runner.invoke(app, ["master", "--help"], env=WIDE)
    assert "(needs herder[postgres])" in result.output
