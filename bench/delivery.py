"""Delivery to a relay: our outbox Deliverer against a bare aiosmtplib loop, same run.

    .venv/bin/python bench/delivery.py [--messages 1000] [--rounds 5]

The relay is an aiosmtpd sink on loopback in its own process (``python -m tests.relay``):
it answers 250 and keeps nothing. "Ours" queues the messages with outbound.enqueue into
a temp SQLite database (not timed), then times ``Deliverer.deliver_due`` until the
outbox is empty: per row a claim committed before the SMTP transaction and the relay's
answer committed right after it (SQLite WAL, synchronous=FULL), over one reused
connection. "Bare" sends the very same stored bytes with aiosmtplib on one connection
and records nothing. Each side runs ``--rounds`` times alternately; the best round of
each is compared. Prints messages/second for both and the ratio; exits 1 below 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
from sqlalchemy import select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.app import App, build  # noqa: E402
from gateway.models import Outbox  # noqa: E402
from gateway.settings import load  # noqa: E402
from tests.relay import Relay, relay_settings  # noqa: E402
from tests.support import free_port, queue_sample_mail  # noqa: E402

TARGET = 0.5
PARTY = "ops@brightenergy.example"


def start_sink(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.relay", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the relay sink did not start")
    return proc


def fill(app: App, count: int) -> list[tuple[str, list[str], bytes]]:
    """Queue ``count`` rows the way the pipeline does; return their envelopes and bytes."""
    queue_sample_mail(app, count, [PARTY])
    with app.sessions() as session:
        return [
            (r.mail_from, list(r.recipients), r.raw)
            for r in session.scalars(select(Outbox).where(Outbox.status == "pending"))
        ]


def ours(app: App) -> float:
    started = time.perf_counter()
    sent = 0
    while results := app.deliverer.deliver_due(limit=10_000):
        if any(r.status != "sent" for r in results):
            raise SystemExit(f"delivery failed: {[r for r in results if r.status != 'sent'][:3]}")
        sent += len(results)
    return sent / (time.perf_counter() - started)


async def bare(port: int, messages: list[tuple[str, list[str], bytes]]) -> float:
    started = time.perf_counter()
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False)
    await smtp.connect()
    for mail_from, recipients, raw in messages:
        await smtp.sendmail(mail_from, recipients, raw)
    await smtp.quit()
    return len(messages) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    ours_rates: list[float] = []
    bare_rates: list[float] = []
    try:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="cpsd-bench-") as tmp:
                config = relay_settings(Path(tmp), Relay(port), outbound="timeout_seconds = 30")
                app = build(load(config))
                try:
                    messages = fill(app, args.messages)
                    bare_rates.append(asyncio.run(bare(port, messages)))
                    ours_rates.append(ours(app))
                    with app.sessions() as session:
                        left = session.scalars(
                            select(Outbox.id).where(Outbox.status != "sent")
                        ).all()
                    if left:
                        raise SystemExit(f"{len(left)} rows not sent")
                finally:
                    app.close()
    finally:
        sink.terminate()
        sink.wait(10)
    best_ours, best_bare = max(ours_rates), max(bare_rates)
    ratio = best_ours / best_bare
    print(f"delivery of {args.messages} outbox rows to an aiosmtpd sink on loopback")
    print(f"  bare aiosmtplib loop : {best_bare:8.1f} msg/s  (rounds: "
          f"{', '.join(f'{r:.0f}' for r in bare_rates)})")  # fmt: skip
    print(f"  outbox Deliverer     : {best_ours:8.1f} msg/s  (rounds: "
          f"{', '.join(f'{r:.0f}' for r in ours_rates)})")  # fmt: skip
    print(f"  ratio                : {ratio:8.2f}  (target >= {TARGET})")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
