"""Run analyse() over every corpus file: no exception, JSON-serialisable, each under 2 s.

Usage: .venv/bin/python bench/corpus_smoke.py /work/shared/corpora [-v]

Every file counts, not only .eml: reply bodies and HTML fragments are "messages" with
odd headers too, and the gateway will meet such input. Exit status 1 on any exception,
any file over the time limit, or output json.dumps cannot serialise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers.analysis import analyse

LIMIT_SECONDS = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("corpora", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per file")
    args = parser.parse_args(argv)
    files = sorted(p for p in args.corpora.rglob("*") if p.is_file() and p.name != "README.md")
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    slowest = (0.0, "")
    total = 0.0
    for path in files:
        raw = path.read_bytes()
        started = time.perf_counter()
        try:
            result = analyse(raw)
            text = json.dumps(result.to_json(), ensure_ascii=False)
        except Exception:
            failures.append(f"{path}: exception\n{traceback.format_exc()}")
            continue
        elapsed = time.perf_counter() - started
        total += elapsed
        kinds[result.kind if result.message is not None else "refused"] += 1
        slowest = max(slowest, (elapsed, str(path.relative_to(args.corpora))))
        if elapsed > LIMIT_SECONDS:
            failures.append(f"{path}: {elapsed:.2f} s (limit {LIMIT_SECONDS} s)")
        if args.verbose:
            print(
                f"{elapsed:7.3f} s  {result.kind:10s} {len(text):7d} B  {path.relative_to(args.corpora)}"
            )
    print(f"files: {len(files)}  total: {total:.2f} s  slowest: {slowest[1]} {slowest[0]:.3f} s")
    print("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
