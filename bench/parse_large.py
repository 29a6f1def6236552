"""Time and memory of analyse() on a large message and on the hostile shapes of B13-B20.

Usage: .venv/bin/python bench/parse_large.py

1. A 25 MB message with 40 attachments of random bytes (base64): analyse() must take
   under 2 s and peak under 200 MB (tracemalloc peak of the call, and the process's
   ru_maxrss growth).
2. Hostile shapes (reliability.md B13-B20): 20,000 flat parts, 2,000 nested multiparts,
   a To: with 20,000 addresses, a 1 MB header, 50,000 headers. Each must finish under
   2 s *and* report a parse problem (the gateway must say why it gave up).
Timing is the best of three runs (the machine is shared and noisy). Exit status 1 when
any target is missed.
"""

from __future__ import annotations

import base64
import gc
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers.analysis import Analysis, analyse

TIME_LIMIT = 2.0
MEMORY_LIMIT_MB = 200.0
RUNS = 3

HEAD = (
    b"From: Ops <ops@brightenergy.example>\r\n"
    b"To: cpsd@elexon.example\r\n"
    b"Subject: DIP rejects IF-041\r\n"
    b"Date: Fri, 27 Nov 2026 09:15:00 +0000\r\n"
    b"Message-ID: <large@brightenergy.example>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def large_message(total_bytes: int = 25 * 1024 * 1024, attachments: int = 40) -> bytes:
    """multipart/mixed: a text body and ``attachments`` base64 parts of random bytes."""
    boundary = b"==large-boundary=="
    per_part = (total_bytes - 8192) // attachments * 57 // 78  # 57 bytes -> 76 chars + CRLF
    pieces = [
        HEAD,
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n',
        b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        b"Summary: DIP rejects IF-041\r\nImpact: 200 customers unbilled\r\nMPAN: 1052601815905\r\n",
    ]
    for n in range(attachments):
        data = os.urandom(per_part)
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        pieces += [
            b"\r\n--" + boundary + b"\r\n",
            b"Content-Type: application/octet-stream\r\n",
            b'Content-Disposition: attachment; filename="evidence-%d.bin"\r\n' % n,
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            encoded,
        ]
    pieces.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(pieces)


def flat_parts(count: int = 20_000) -> bytes:
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + b"--b--\r\n"


def nested_multiparts(depth: int = 2_000) -> bytes:
    opening = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    return (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        + opening
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth
        + closing
    )


def many_recipients(count: int = 20_000) -> bytes:
    to = b", ".join(b"user%d@party.example" % i for i in range(count))
    return b"From: ops@brightenergy.example\r\nTo: " + to + b"\r\nSubject: x\r\n\r\nbody\r\n"


def huge_header(size: int = 1024 * 1024) -> bytes:
    return HEAD + b"X-Junk: " + b"a" * size + b"\r\nContent-Type: text/plain\r\n\r\nbody\r\n"


def many_headers(count: int = 50_000) -> bytes:
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return HEAD + extra + b"Content-Type: text/plain\r\n\r\nbody\r\n"


def big_text_body(content_type: bytes, size: int = 30 * 1024 * 1024) -> bytes:
    line = b"The DIP rejected IF-041 for MPAN 1052601815905 at 27/11/2026 09:15 (E0123)."
    if content_type == b"text/html":
        line = b"<p class=MsoNormal><span style='font-size:11pt'>" + line + b"</span></p>"
    body = (line + b"\r\n") * (size // (len(line) + 2))
    return HEAD + b"Content-Type: " + content_type + b"; charset=utf-8\r\n\r\n" + body


def rfc2231_segments(header: bytes, count: int = 10_000) -> bytes:
    """B34: one attachment whose name comes in ``count`` RFC 2231 segments."""
    name = b"filename" if header == b"Content-Disposition" else b"name"
    segments = b"; ".join(b"%s*%d*=%%41" % (name, i) for i in range(count))
    if header == b"Content-Disposition":
        part = b"Content-Type: application/pdf\r\nContent-Disposition: attachment; " + segments
    else:
        part = b"Content-Type: application/pdf; " + segments
    return (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        + b"--b\r\n"
        + part
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )


def best_time(raw: bytes) -> tuple[float, Analysis]:
    best = float("inf")
    result: Analysis | None = None
    for _ in range(RUNS):
        gc.collect()
        started = time.perf_counter()
        result = analyse(raw)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def peak_memory(raw: bytes) -> tuple[float, float]:
    """(tracemalloc peak of one analyse call, ru_maxrss growth) in MB."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    analyse(raw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20, (rss_after - rss_before) / 1024


def main() -> int:
    failed = False
    raw = large_message()
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    traced, rss_growth = peak_memory(raw)  # first, so ru_maxrss growth is this call's
    seconds, result = best_time(raw)
    ok = (
        seconds < TIME_LIMIT
        and traced < MEMORY_LIMIT_MB
        and rss_growth < MEMORY_LIMIT_MB
        and len(result.evidence) == 40
        and result.message is not None
    )
    failed |= not ok
    print(
        f"large message: {len(raw) / 2**20:.1f} MB, {len(result.evidence)} evidence items, "
        f"analyse {seconds:.2f} s, tracemalloc peak {traced:.0f} MB, "
        f"ru_maxrss {rss_start:.0f} -> {rss_start + rss_growth:.0f} MB (+{rss_growth:.0f})"
        f"  {'ok' if ok else 'MISSED'}"
    )

    shapes: list[tuple[str, Callable[[], bytes]]] = [
        ("20,000 flat parts", flat_parts),
        ("2,000 nested multiparts", nested_multiparts),
        ("To: with 20,000 addresses", many_recipients),
        ("1 MB header", huge_header),
        ("50,000 headers", many_headers),
    ]
    for label, build in shapes:
        hostile = build()
        seconds, result = best_time(hostile)
        reported = bool(result.parse_problems)
        ok = seconds < TIME_LIMIT and reported
        failed |= not ok
        why = result.parse_problems[0] if reported else "no parse problem reported"
        print(
            f"{label:28s} {len(hostile) / 1024:8.0f} KB  {seconds:6.3f} s  {why}  {'ok' if ok else 'MISSED'}"
        )

    # Not part of the exit status: shapes at the limits, and shapes whose cost lies in the
    # stdlib parser before analyse() gets a say (mime.py does not bound part headers).
    extras: list[tuple[str, Callable[[], bytes]]] = [
        ("30 MB text/plain body", lambda: big_text_body(b"text/plain")),
        ("30 MB text/html body", lambda: big_text_body(b"text/html")),
        ("1,000 flat parts (at limit)", lambda: flat_parts(999)),
        ("50 nested multiparts (limit)", lambda: nested_multiparts(48)),
        ("RFC 2231 x10k, part C-D", lambda: rfc2231_segments(b"Content-Disposition")),
        ("RFC 2231 x10k, part C-T", lambda: rfc2231_segments(b"Content-Type")),
    ]
    print("informational:")
    for label, build in extras:
        raw = build()
        started = time.perf_counter()
        result = analyse(raw)
        seconds = time.perf_counter() - started
        note = result.parse_problems[0] if result.parse_problems else "-"
        print(f"  {label:28s} {len(raw) / 1024:8.0f} KB  {seconds:6.3f} s  {note[:70]}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
