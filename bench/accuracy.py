"""Reply-text accuracy against the public corpora's known answers.

Usage: .venv/bin/python bench/accuracy.py /work/shared/corpora [--baseline] [-v]

Only fixtures whose expected answer is known are counted. The answers come from the
corpora's READMEs, which transcribe the upstream tests:
  talon                      tests/text_quotations_test.py, html_quotations_test.py,
                             signature/extraction_test.py (body minus the signature)
  github-email_reply_parser  test/email_reply_parser_test.rb (visible/first fragment)
  zapier-email-reply-parser  test/test_email_reply_parser.py
  mail-parser-reply          test/test_email_reply_parser.py (assertions on replies[0].body)
Comparison is whitespace-insensitive. ``--baseline`` scores plain mail-parser-reply
(EmailReplyParser(...).parse_reply) on the same table, so our own rules stay justified.
Exit status 1 when overall < 95 % or talon's standard replies < 100 %.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers.body import decode_part, html_to_text
from parsers.reply import reply_text

_WS = re.compile(r"\s+")
TALON_HTML_ANSWER = "Hi. I am fine.\n\nThanks,\nAlex"


def squash(text: str) -> str:
    return _WS.sub("", text)


@dataclass(frozen=True)
class Check:
    """What the upstream test asserts about the new text of the reply."""

    equals: str | None = None
    starts: str | None = None
    contains: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    nonempty: bool = False

    def verdict(self, got: str) -> str | None:
        """None when right, else a short reason."""
        g = squash(got)
        if self.equals is not None and g != squash(self.equals):
            return "not equal"
        if self.starts is not None and not g.startswith(squash(self.starts)):
            return f"does not start with {self.starts!r}"
        for part in self.contains:
            if squash(part) not in g:
                return f"missing {part!r}"
        for part in self.excludes:
            if squash(part) in g:
                return f"still has {part!r}"
        if self.nonempty and not g:
            return "empty"
        return None


@dataclass(frozen=True)
class Fixture:
    source: str
    path: str
    form: str  # "text" (a body), "html" (an HTML body), "eml" (first text/plain part)
    check: Check
    sender: str | None = None
    group: str = ""


def _fixtures(root: Path) -> list[Fixture]:
    out: list[Fixture] = []
    talon = root / "talon"
    for eml in sorted((talon / "standard_replies").glob("*.eml")):
        answer_file = eml.with_name(f"{eml.stem}_reply_text")
        answer = (
            answer_file.read_text(encoding="utf-8").strip() if answer_file.exists() else "Hello"
        )
        out.append(
            Fixture(
                "talon", str(eml.relative_to(root)), "eml", Check(equals=answer), group="standard"
            )
        )
    for html in sorted((talon / "html_replies").glob("*.html")):
        out.append(
            Fixture("talon", str(html.relative_to(root)), "html", Check(equals=TALON_HTML_ANSWER))
        )
    if (talon / "OLK_SRC_BODY_SECTION.html").exists():
        # upstream: stripped HTML == <div>Reply</div>, i.e. the text "Reply"
        out.append(
            Fixture("talon", "talon/OLK_SRC_BODY_SECTION.html", "html", Check(equals="Reply"))
        )
    if (talon / "reply-quotations-share-block.eml").exists():
        out.append(
            Fixture(
                "talon",
                "talon/reply-quotations-share-block.eml",
                "eml",
                Check(nonempty=True, excludes=("From",)),
            )
        )
    for body in sorted((talon / "signature" / "emails" / "stripped").glob("*_body")):
        name = body.name[: -len("_body")]
        sig_file = body.with_name(f"{name}_signature")
        sender_file = body.with_name(f"{name}_sender")
        if not sig_file.exists():
            continue
        text = body.read_text(encoding="utf-8")
        signature = sig_file.read_text(encoding="utf-8").strip()
        expected = text.strip()
        if signature:
            expected = (
                expected[: expected.rfind(signature)].strip() if signature in expected else expected
            )
        sender = sender_file.read_text(encoding="utf-8").strip() if sender_file.exists() else None
        out.append(
            Fixture(
                "talon-signature",
                str(body.relative_to(root)),
                "text",
                Check(equals=expected),
                sender=sender or None,
            )
        )

    gh = "github-email_reply_parser"
    gh_checks = {
        "correct_sig.txt": Check(equals="this is an email with a correct -- signature."),
        "email_1_1.txt": Check(
            equals="Hi folks\n\nWhat is the best way to clear a Riak bucket of all key, values after\n"
            "running a test?\nI am currently using the Java HTTP API."
        ),
        "email_1_2.txt": Check(starts="Hi,"),
        "email_1_4.txt": Check(equals="Awesome! I haven't had another problem with it."),
        "email_1_5.txt": Check(equals=_read(root / gh / "email_1_5.txt")),
        "email_1_7.txt": Check(equals=":+1:"),
        "email_1_8.txt": Check(
            contains=("I will reply under this one", "and under this."),
            excludes=("Hey there, this is my signature",),
        ),
        "email_2_2.txt": Check(equals="Outlook with a reply directly above line"),
        "email_bullets.txt": Check(
            equals="test 2 this should list second\n\nand have spaces\n\nand retain this formatting"
            "\n\n\n   - how about bullets\n   - and another"
        ),
        "email_iPhone.txt": Check(equals="Here is another email"),
        "email_multi_word_sent_from_my_mobile_device.txt": Check(equals="Here is another email"),
        "email_one_is_not_on.txt": Check(
            contains=("One outstanding question",), excludes=("On Oct 1, 2012",)
        ),
        "email_sig_delimiter_in_middle_of_line.txt": Check(
            equals=_read(root / gh / "email_sig_delimiter_in_middle_of_line.txt")
        ),
    }
    out += [Fixture(gh, f"{gh}/{name}", "text", check) for name, check in gh_checks.items()]

    zp = "zapier-email-reply-parser"
    zp_checks = {
        "email_2_3.txt": Check(equals="Outlook with a reply above headers using unusual format"),
        "email_gmail.txt": Check(equals="This is a test for inbox replying to a github message."),
        "email_partial_quote_header.txt": Check(
            contains=(
                "On your remote host you can run:",
                "telnet 127.0.0.1 52698",
                "This should connect to TextMate",
            )
        ),
    }
    out += [Fixture(zp, f"{zp}/{name}", "text", check) for name, check in zp_checks.items()]

    mp = "mail-parser-reply"
    mp_checks = {
        "begins_with_signature.txt": Check(
            contains=("I have sent an invite for 10:30am Monday PDT",), excludes=("Regards,",)
        ),
        "email_1_1.txt": Check(contains=("Hi folks",), excludes=("riak-users",)),
        "email_1_7.txt": Check(contains=(":+1:",), excludes=("Steps 0-2",)),
        "email_danish_1.txt": Check(
            contains=("Hej Peter,",), excludes=("Med venlig hilsen\nAnders Andersen", "Hej Anders,")
        ),
        "email_danish_2.txt": Check(
            contains=("Jeg har modtaget filerne.",),
            excludes=("Hilsen\nSøren", "Her er filerne du bad om."),
        ),
        "email_danish_4.txt": Check(
            contains=("Svar.",), excludes=("-----Oprindelig meddelelse-----",)
        ),
        "email_danish_5.txt": Check(contains=("Svar.",), excludes=("Kh\nPeter",)),
        "email_ja_1_1.txt": Check(contains=("こんにちは",)),
        "email_nl_1_2.txt": Check(
            contains=("Outlook met een antwoord",),
            excludes=("Google Apps Sync Team [mailto:mail-noreply@google.com]",),
        ),
        "email_pl_1_1.txt": Check(contains=("Czesc Anno",), excludes=("Pozdrawiam,\nJan",)),
        "email_pl_1_3.txt": Check(excludes=("Z powazaniem,\nJan",), nonempty=True),
        "email_sent_from_not_signature.txt": Check(
            equals="Here is another email\n\nSent from my desk, is much easier than my mobile phone."
        ),
        "email_sv_anon_1.txt": Check(
            contains=("Berättar gärna.",), excludes=("Kan inte se att det står något",)
        ),
        "email_swedish_1.txt": Check(
            contains=("Ursäkta mitt sena svar!",), excludes=("Hej Person B,",)
        ),
    }
    out += [Fixture(mp, f"{mp}/{name}", "text", check) for name, check in mp_checks.items()]
    return [f for f in out if (root / f.path).exists()]


# Upstream asserts only that these finish quickly (github: under 1 s).
TIMING_ONLY = (
    "github-email_reply_parser/pathological.txt",
    "github-email_reply_parser/email_long_quote.txt",
)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _input_text(root: Path, fixture: Fixture) -> str:
    path = root / fixture.path
    if fixture.form == "html":
        return html_to_text(path.read_text(encoding="utf-8", errors="replace"))
    if fixture.form == "eml":
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(msg, EmailMessage)
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                return decode_part(part, 4 * 1024 * 1024)
        return ""
    return path.read_bytes().decode("utf-8", "replace")


def _baseline(text: str, sender: str | None) -> str:
    """Plain mail-parser-reply: the body of the newest reply (signature removed)."""
    from mailparser_reply import EmailReplyParser

    from parsers.reply import DEFAULT_LANGUAGES

    replies = EmailReplyParser(languages=list(DEFAULT_LANGUAGES)).read(text).replies
    return replies[0].body if replies else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("corpora", type=Path)
    parser.add_argument("--baseline", action="store_true", help="score plain mail-parser-reply")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the misses' output")
    args = parser.parse_args(argv)
    root: Path = args.corpora
    extract: Callable[[str, str | None], str] = (
        _baseline if args.baseline else (lambda text, sender: reply_text(text, sender=sender))
    )

    fixtures = _fixtures(root)
    totals: dict[str, list[int]] = {}
    misses: list[str] = []
    right = 0
    for fixture in fixtures:
        got = extract(_input_text(root, fixture), fixture.sender)
        reason = fixture.check.verdict(got)
        right += reason is None
        key = fixture.source + (f" ({fixture.group})" if fixture.group else "")
        for name in {fixture.source, key}:
            totals.setdefault(name, [0, 0])
            totals[name][1] += 1
            totals[name][0] += reason is None
        if reason is not None:
            misses.append(f"  {fixture.path}: {reason}")
            if args.verbose:
                misses.append("    got: " + repr(got[:300]))

    label = "mail-parser-reply baseline" if args.baseline else "parsers.reply"
    print(f"reply-text accuracy ({label}), whitespace-insensitive, known answers only")
    for name in sorted(totals):
        ok, n = totals[name]
        print(f"  {name:40s} {ok:3d}/{n:<3d} {100 * ok / n:6.1f}%")
    overall = 100 * right / len(fixtures) if fixtures else 0.0
    print(f"  {'overall':40s} {right:3d}/{len(fixtures):<3d} {overall:6.1f}%")
    print("misses:" if misses else "misses: none")
    for line in misses:
        print(line)

    slow = []
    for rel in TIMING_ONLY:
        path = root / rel
        if not path.exists():
            continue
        started = time.perf_counter()
        extract(_read(path), None)
        elapsed = time.perf_counter() - started
        print(f"timing {rel}: {elapsed:.3f} s (limit 1 s)")
        if elapsed > 1.0:
            slow.append(rel)

    standard = totals.get("talon (standard)", [0, 0])
    failed = overall < 95.0 or standard[0] < standard[1] or bool(slow)
    if args.baseline:
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
