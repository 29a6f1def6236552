"""Helpers shared by tests and benchmarks: real settings files on free loopback ports."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_text(tmp: Path, port: int, extra: str = "", parties: Path | None = None) -> str:
    """Settings for one test: everything under tmp, extra lines go in [worker].

    Batches are prepared inline unless ``extra`` asks for processes: a pool per test
    would cost each a process start (tests/gateway/test_prepare.py runs the pool).
    """
    if "prepare_processes" not in extra:
        extra = f"prepare_processes = 0\n{extra}"
    return f"""
[gateway]
mailboxes = ["cpsd@elexon.example"]
reference_prefix = "CPSD"
staff_domains = ["elexon.example"]

[database]
url = "sqlite:///{tmp / "var" / "gateway.db"}"

[storage]
raw_dir = "{tmp / "var" / "raw"}"

[smtp]
listen = "127.0.0.1:{port}"

[worker]
idle_seconds = 0.1
{extra}
[outbound]
transport = "maildir"
maildir = "{tmp / "var" / "outbox"}"
from_address = "cpsd@elexon.example"

[parties]
file = "{parties or REPO / "parties.toml"}"

[templates]
dir = "{REPO / "templates"}"
"""


def queue_sample_mail(
    app: Any,
    count: int,
    to: Sequence[str],
    *,
    kind: str = "notice",
    priority: int = 5,
    case_id: int | None = None,
) -> list[Any]:
    """Queue ``count`` acknowledgements (sample context) the way the pipeline does.

    Shared by the delivery tests and bench/delivery.py; returns the outbox rows.
    """
    from gateway import outbound
    from gateway.models import Case

    context = app.renderer.sample("acknowledgement")
    with app.sessions.begin() as session:
        case = session.get(Case, case_id) if case_id else None
        return [
            outbound.enqueue(
                session,
                app.renderer,
                app.identity,
                template="acknowledgement",
                context=context,
                to=list(to),
                case=case,
                kind=kind,
                auto_submitted="auto-replied" if kind == "auto_reply" else "auto-generated",
                priority=priority,
            )
            for _ in range(count)
        ]


def deliver_concurrently(deliverers: Sequence[Any], limit: int = 10) -> list[BaseException]:
    """Run each deliverer's passes on a thread of its own until none is left; the errors."""
    import threading

    errors: list[BaseException] = []

    def run(deliverer: Any) -> None:
        try:
            while deliverer.deliver_due(limit=limit):
                pass
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def alive(pid: int) -> bool:
    """Is this process running? (A zombie nobody has reaped yet counts as ended.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped while being read
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
