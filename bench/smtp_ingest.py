"""SMTP ingest throughput: our durable listener against a bare aiosmtpd sink, same run.

    .venv/bin/python bench/smtp_ingest.py [--messages 2000] [--rounds 3] [--clients 1 8 32]
                                          [--reuse | --light-client] [--worker]

Each client sends 4 KB messages back to back, by default one SMTP session per message
(connect, EHLO, MAIL, RCPT, DATA, QUIT), which is how other organisations' MTAs deliver
to a service desk; ``--reuse`` keeps one connection per client instead. "Ours" is
`cpsd-gateway serve` with the worker off (an ingest-only node), so what is measured is
accept = raw bytes fsync'd + row committed before 250. The sink answers 250 and keeps
nothing. Prints messages/second for both and their ratio (target ≥ 0.8 at 8 and 32).

The clients run on aiosmtplib (about 0.6 ms of CPU per message) in this process, on the
same two cores as the servers; ``--light-client`` speaks SMTP over bare asyncio streams,
so less of the machine goes to generating load.

``--worker`` runs ours as `serve` runs by default, with the worker on: every message is
from a party in the demo directory, so each raises a case and queues mail while the
listener takes the next. The target is for the ingest-only node; this shows what a burst
costs a node that also processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import free_port, settings_text  # noqa: E402


def message(i: int, run: str) -> bytes:
    body = ("Summary: DIP rejected IF-041 for MPAN 1052601815905\n" * 80)[:3800]
    return (
        f"From: ops@brightenergy.example\r\nTo: cpsd@elexon.example\r\n"
        f"Subject: bench {run} {i}\r\nMessage-ID: <bench-{run}-{i}@brightenergy.example>\r\n"
        f"Date: Fri, 27 Nov 2026 09:15:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code.decode()}, got {line!r}")
        if line[3:4] != b"-":
            return


async def light_send(port: int, raw: bytes) -> None:
    """One SMTP session with nothing but asyncio streams: the lightest load generator."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _expect(reader, b"220")
        for command, code in (
            (b"EHLO bench.example", b"250"),
            (b"MAIL FROM:<ops@brightenergy.example>", b"250"),
            (b"RCPT TO:<cpsd@elexon.example>", b"250"),
            (b"DATA", b"354"),
        ):
            writer.write(command + b"\r\n")
            await _expect(reader, code)
        # CRLF line endings, as aiosmtplib sends them; no line of message() starts with "."
        writer.write(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
        await _expect(reader, b"250")
        writer.write(b"QUIT\r\n")
        await _expect(reader, b"221")
    finally:
        writer.close()


async def blast(
    port: int, clients: int, total: int, run: str, reuse: bool = False, light: bool = False
) -> float:
    per_client = total // clients

    async def client(c: int) -> None:
        if light:
            for i in range(per_client):
                await light_send(port, message(c * per_client + i, run))
            return
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        if reuse:
            await smtp.connect()
        for i in range(per_client):
            raw = message(c * per_client + i, run)
            if not reuse:
                await smtp.connect()
            await smtp.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], raw)
            if not reuse:
                await smtp.quit()
        if reuse:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return per_client * clients / (time.perf_counter() - started)


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on {port} did not start")


def start_ours(tmp: Path, worker: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = tmp / "settings.toml"
    config.write_text(settings_text(tmp, port, "" if worker else "enabled = false\n"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    wait_port(port, proc)
    return proc, port


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    parser.add_argument("--reuse", action="store_true", help="one connection per client")
    parser.add_argument(
        "--light-client",
        action="store_true",
        help="asyncio streams instead of aiosmtplib: less of the 2 cores go to the load",
    )
    parser.add_argument("--worker", action="store_true", help="ours processes as it accepts")
    args = parser.parse_args()
    if args.reuse and args.light_client:
        parser.error("--reuse and --light-client do not go together")
    failed = False
    mode = "one connection per client" if args.reuse else "one SMTP session per message"
    client = "asyncio streams" if args.light_client else "aiosmtplib"
    node = "worker on" if args.worker else "ingest-only node"
    print(f"SMTP ingest, 4 KB messages, {mode}, clients on {client}, {node}")
    print(f"{'clients':>7} {'sink msg/s':>11} {'ours msg/s':>11} {'ratio':>6}")
    light = args.light_client
    for clients in args.clients:
        best_sink = best_ours = 0.0
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                sink, sport = start_sink()
                ours, oport = start_ours(Path(tmp), args.worker)
                try:
                    run = f"{clients}-{r}-{os.getpid()}"
                    best_sink = max(
                        best_sink,
                        asyncio.run(
                            blast(sport, clients, args.messages, "s" + run, args.reuse, light)
                        ),
                    )
                    best_ours = max(
                        best_ours,
                        asyncio.run(
                            blast(oport, clients, args.messages, "o" + run, args.reuse, light)
                        ),
                    )
                finally:
                    for proc in (sink, ours):
                        proc.terminate()
                        proc.wait(30)
        ratio = best_ours / best_sink
        print(f"{clients:>7} {best_sink:>11.0f} {best_ours:>11.0f} {ratio:>6.2f}")
        failed = failed or (clients >= 8 and ratio < 0.8)
    print("target: ratio >= 0.80 at 8 and 32 clients:", "missed" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
