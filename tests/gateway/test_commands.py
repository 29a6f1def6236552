from __future__ import annotations

import pytest

from gateway.commands import Command, help_lines, parse


@pytest.mark.parametrize(
    ("text", "commands", "rest"),
    [
        ("#triage\n", [Command("triage")], ""),
        ("\n\n#priority p2\nthanks", [Command("priority", "P2")], "thanks"),
        (
            "#assign DCC\n#awaiting\n\nDCC are looking",
            [Command("assign", "DCC"), Command("awaiting")],
            "DCC are looking",
        ),
        ("#resolve config corrected by DCC", [Command("resolve", "config corrected by DCC")], ""),
        ("#redirect mpas", [Command("redirect", "mpas")], ""),
        (
            "#note called them at 10:00\n#major",
            [Command("note", "called them at 10:00"), Command("major")],
            "",
        ),
        ("#close", [Command("close")], ""),
        ("Thanks, we are on it.\n#triage", [], "Thanks, we are on it.\n#triage"),
        ("", [], ""),
    ],
)
def test_commands_are_the_leading_hash_lines(text: str, commands: list[Command], rest: str) -> None:
    parsed = parse(text)
    assert list(parsed.commands) == commands
    assert parsed.errors == ()
    assert parsed.rest == rest


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("#frobnicate", "#frobnicate is not a command"),
        ("#assign", "#assign needs an argument"),
        ("#priority urgent", "#priority takes P1, P2, P3 or P4, not 'urgent'"),
        ("#resolve", "#resolve needs an argument"),
        ("# triage", "'# triage' is not a command"),
    ],
)
def test_invalid_commands_are_reported(text: str, error: str) -> None:
    parsed = parse(text)
    assert error in parsed.errors


def test_help_lists_every_command() -> None:
    assert len(help_lines()) == 9
    assert any(line.startswith("#assign") for line in help_lines())
