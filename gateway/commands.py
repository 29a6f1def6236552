"""Staff commands written at the top of a reply: parsing only (pure), no effects.

Staff drive cases from their normal mail client, so commands are plain lines such as
``#assign DCC`` or ``#resolve fixed by DCC's config change``. A message whose top lines
hold an unknown or malformed command changes nothing: the sender is told what is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRIORITY = re.compile(r"^P[1-4]$", re.IGNORECASE)

# name -> (argument required?, help text)
COMMANDS: dict[str, tuple[bool, str]] = {
    "triage": (False, "#triage — start triage"),
    "priority": (True, "#priority P1|P2|P3|P4 — set the priority (and the SLA clock)"),
    "assign": (True, "#assign <party> — raise a child case to that party's nominated mailbox"),
    "awaiting": (False, "#awaiting — the case waits for another party"),
    "resolve": (True, "#resolve <summary> — resolve and send the resolution notice"),
    "close": (False, "#close — close and send the closure notice"),
    "redirect": (True, "#redirect <desk> — point the raiser at the right desk and resolve"),
    "note": (True, "#note <text> — an internal note, never sent"),
    "major": (False, "#major — flag a major incident"),
}
_LINE = re.compile(r"^#([A-Za-z_-]+)(?:[ \t]+(.*))?$")


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...] = ()
    errors: tuple[str, ...] = ()
    rest: str = ""  # the text after the command lines


def parse(text: str, max_commands: int = 20) -> Parsed:
    """Commands are the leading non-blank lines that start with '#'."""
    lines = text.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    while (
        index < len(lines) and lines[index].strip().startswith("#") and len(commands) < max_commands
    ):
        line = lines[index].strip()
        index += 1
        found = _LINE.match(line)
        if not found:
            errors.append(f"{line!r} is not a command")
            continue
        name, argument = found.group(1).lower(), (found.group(2) or "").strip()
        if name not in COMMANDS:
            errors.append(f"#{name} is not a command")
            continue
        needs_argument, _ = COMMANDS[name]
        if needs_argument and not argument:
            errors.append(f"#{name} needs an argument")
            continue
        if name == "priority" and not PRIORITY.match(argument):
            errors.append(f"#priority takes P1, P2, P3 or P4, not {argument!r}")
            continue
        commands.append(Command(name, argument.upper() if name == "priority" else argument))
    return Parsed(tuple(commands), tuple(errors), "\n".join(lines[index:]).strip())


def help_lines() -> list[str]:
    return [text for _, text in COMMANDS.values()]
