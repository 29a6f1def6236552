from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.compose import MAX_DISPLAY_NAME, MAX_REFERENCES, compose, new_message_id
from gateway.render import Rendered, Renderer, RenderError

REPO = Path(__file__).resolve().parents[2]


def _render(subject: str) -> bytes:
    rendered = Renderer(REPO / "templates").render(
        "acknowledgement",
        {
            "case": {"reference": "CPSD-000001", "subject": subject, "priority": "P3"},
            "recipient": {"address": "ops@brightenergy.example", "party": "Bright <b>"},
        },
    )
    return compose(
        rendered,
        mail_from="cpsd@elexon.example",
        from_name="Cross-Party Service Desk",
        to=["ops@brightenergy.example"],
        message_id=new_message_id("elexon.example", "CPSD-000001"),
        in_reply_to="<m1@brightenergy.example>",
        references=["<m1@brightenergy.example>"],
        auto_submitted="auto-replied",
    ).raw


def test_acknowledgement_is_threaded_multipart_and_marked_automatic() -> None:
    parsed = message_from_bytes(_render("DIP rejects IF-041"), policy=policy.default)
    assert parsed["Subject"] == "[CPSD-000001] DIP rejects IF-041"
    assert parsed["In-Reply-To"] == "<m1@brightenergy.example>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Message-ID"].endswith("@elexon.example>")
    assert parsed.get_content_type() == "multipart/alternative"
    html = parsed.get_body(("html",))
    assert html is not None and "Bright &lt;b&gt;" in html.get_content()
    text = parsed.get_body(("plain",))
    assert text is not None and "Bright <b>" in text.get_content()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \r\n\x00:Bcc\u2028\t"), max_size=60))
def test_no_subject_value_can_add_a_header_line(subject: str) -> None:
    raw = _render("x" + subject + "\r\nBcc: victim@evil.example")
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header_block
    parsed = message_from_bytes(raw, policy=policy.default)
    assert "Bcc" not in parsed
    assert "\n" not in str(parsed["Subject"])


def test_unknown_variable_fails_naming_the_file(tmp_path: Path) -> None:
    for part in ("subject", "txt", "html"):
        (tmp_path / f"t.{part}.j2").write_text("{{ case.nope }}")
    with pytest.raises(RenderError, match=r"t\.subject\.j2"):
        Renderer(tmp_path).render("t", {"case": {}})


def test_sandbox_refuses_escape_attempts(tmp_path: Path) -> None:
    for part in ("subject", "txt", "html"):
        (tmp_path / f"t.{part}.j2").write_text("{{ ''.__class__.__mro__ }}")
    with pytest.raises(RenderError, match=r"SecurityError|UndefinedError"):
        Renderer(tmp_path).render("t", {})


def test_output_size_is_capped(tmp_path: Path) -> None:
    for part in ("subject", "txt", "html"):
        (tmp_path / f"t.{part}.j2").write_text(
            "{% for i in range(90000) %}{{ 'a' * 100 }}{% endfor %}"
        )
    with pytest.raises(RenderError, match="output over"):
        Renderer(tmp_path, max_output_chars=100_000).render("t", {})


def test_unsafe_recipient_is_refused() -> None:
    rendered = Renderer(REPO / "templates").render(
        "acknowledgement",
        {
            "case": {"reference": "CPSD-1", "subject": "s", "priority": "P3"},
            "recipient": {"party": ""},
        },
    )
    with pytest.raises(ValueError, match="unsafe address"):
        compose(
            rendered,
            mail_from="cpsd@elexon.example",
            from_name="x",
            to=["a@x.example\r\nRCPT TO:<evil@x.example>"],
            message_id="<a@b>",
        )


# -- header safety through the template, attachments, threading (B41, B45) ---------------

SAMPLE_FROM = "cpsd@elexon.example"


def _compose(**kwargs: object) -> bytes:
    renderer = Renderer(REPO / "templates")
    context = renderer.sample("acknowledgement")
    subject = kwargs.pop("subject", None)
    if subject is not None:
        context["case"]["subject"] = subject
    options: dict[str, object] = {
        "mail_from": SAMPLE_FROM,
        "from_name": "Cross-Party Service Desk",
        "to": ["ops@brightenergy.example"],
        "message_id": new_message_id("elexon.example", "CPSD-000123"),
        "reply_to": SAMPLE_FROM,
    }
    options.update(kwargs)
    return compose(renderer.render("acknowledgement", context), **options).raw  # type: ignore[arg-type]


def test_case_subject_with_line_breaks_gives_one_clean_subject_header() -> None:
    raw = _compose(subject="Help\r\nBcc: victim@evil.example\r\n\r\n<html>body")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed.get_all("Subject") == ["[CPSD-000123] Help Bcc: victim@evil.example <html>body"]
    assert "Bcc" not in parsed


def test_attachment_name_with_line_breaks_and_quotes_is_rfc2231_and_one_part() -> None:
    hostile = 'a"\r\nContent-Type: text/html\r\n\r\n<script>.txt'
    raw = _compose(attachments=[(hostile, "text/plain", b"evidence bytes")])
    assert b"filename*0*=utf-8''a%22%20Content-Type%3A%20text_html%20%3Cscript%3E.txt" in raw
    assert b"<script>" not in raw and b'filename="' not in raw
    parsed = message_from_bytes(raw, policy=policy.default)
    attachments = list(parsed.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_filename() == 'a" Content-Type: text_html <script>.txt'
    assert attachments[0].get_content_type() == "text/plain"
    assert attachments[0].get_payload(decode=True) == b"evidence bytes"
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/plain",
    ]


def test_plain_names_stay_readable_long_and_foreign_names_round_trip() -> None:
    long_name = "Übersicht " + "n" * 180 + ".pdf"
    raw = _compose(
        attachments=[
            ("dip-status.pdf", "application/pdf", b"%PDF-1.7"),
            (long_name, "application/pdf", b"%PDF-1.7"),
            ("x.bin", "text/html\r\nX-Evil: 1", b"\x00\x01"),
            ("C:\\Users\\ops\\mail.eml", "message/rfc822", b"From: a@b\r\n\r\nx"),
        ]
    )
    assert b'filename="dip-status.pdf"' in raw and b"X-Evil" not in raw
    parsed = message_from_bytes(raw, policy=policy.default)
    found = [(a.get_filename(), a.get_content_type()) for a in parsed.iter_attachments()]
    assert found == [
        ("dip-status.pdf", "application/pdf"),
        (long_name, "application/pdf"),
        ("x.bin", "application/octet-stream"),
        ("C:_Users_ops_mail.eml", "application/octet-stream"),
    ]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_references_keep_the_newest_and_drop_what_is_not_a_message_id() -> None:
    chain = [f"<r{i}@x.example>" for i in range(30)]
    raw = _compose(
        in_reply_to="<r29@x.example>\r\nBcc: evil@x.example",
        references=[*chain, "not-an-id", "<r29@x.example>", "<a b@x>"],
    )
    parsed = message_from_bytes(raw, policy=policy.default)
    references = str(parsed["References"]).split()
    assert len(references) == MAX_REFERENCES
    assert references == chain[-MAX_REFERENCES:]
    assert "In-Reply-To" not in parsed  # a value with a line break is not a Message-ID
    assert "Bcc" not in parsed


def test_every_mail_has_date_message_id_from_and_reply_to_and_is_7bit() -> None:
    raw = _compose(subject="Zählerstand für MPAN 1052601815905 — bitte prüfen")
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Date"].datetime is not None
    assert parsed["Message-ID"].startswith("<cpsd-000123.")
    assert parsed["From"].addresses[0].addr_spec == SAMPLE_FROM
    assert parsed["Reply-To"] == SAMPLE_FROM
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert raw.isascii()
    assert "Zählerstand" in str(parsed["Subject"])
    # The reference stays readable in the raw header, for tools that do not decode it.
    assert b"\r\nSubject: [CPSD-000123] =?utf-8?" in raw


def test_a_malformed_message_id_is_refused() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        _compose(message_id="<a@b>\r\nBcc: x@y")


_WORDS = st.sampled_from(
    [
        "MPAN",
        "1052601815905",
        "Zählerstand",
        "für",
        "—",
        "Übergabe",
        "IF-041",
        "日本",
        "é",
        "x" * 90,
    ]
)
_TEXT = st.lists(_WORDS, max_size=40).map(" ".join)


@settings(max_examples=80, deadline=None)
@given(
    subject=_TEXT,
    name=_TEXT,
    text=st.lists(_TEXT, max_size=6).map("\n".join),
    long_line=st.booleans(),
)
@example(
    subject="",
    name=" ".join(["Zählerstand"] + ["x" * 90] * 9),  # found by hypothesis in CI: 1,111 chars
    text="",
    long_line=False,
)
def test_what_we_write_is_what_a_reader_gets_back(
    subject: str, name: str, text: str, long_line: bool
) -> None:
    """Every header and body, ASCII or not, short or long, reads back exactly, in 7 bit."""
    body = text + ("\n" + "y" * 1500 if long_line else "") + "\n"
    rendered = Rendered("t", "v1", f"[CPSD-000007] {subject}", body, f"<p>{body}</p>\n")
    raw = compose(
        rendered,
        mail_from=SAMPLE_FROM,
        from_name=name or "Desk",
        to=["ops@brightenergy.example", "dip@dip.example"],
        message_id="<cpsd-000007.1@elexon.example>",
    ).raw
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.count(b"MIME-Version:") == 1  # on the message, not on each part
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == " ".join(f"[CPSD-000007] {subject}".split())
    shown = " ".join((name or "Desk").split())[:MAX_DISPLAY_NAME].strip()
    assert parsed["From"].addresses[0].display_name == shown
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        "ops@brightenergy.example",
        "dip@dip.example",
    ]
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == body
    assert html.get_content().replace("\r\n", "\n") == f"<p>{body}</p>\n"


def test_a_boundary_found_in_the_text_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first boundary drawn appears in the 7-bit text (someone pasted our own mail):
    another is drawn, and each part reads back whole."""
    draws = iter(["a" * 32, "b" * 32, "c" * 32])
    monkeypatch.setattr("gateway.compose.secrets.token_hex", lambda n: next(draws))
    body = "Forwarded as it came:\n--=_cpsd_" + "a" * 32 + "\nMPAN 1200023305967\n"
    rendered = Rendered("t", "v1", "[CPSD-000007] pasted", body, "<p>pasted</p>\n")
    raw = compose(
        rendered,
        mail_from=SAMPLE_FROM,
        from_name="Desk",
        to=["ops@brightenergy.example"],
        message_id="<cpsd-000007.2@elexon.example>",
        attachments=[("log.txt", "text/plain", b"--=_cpsd_" + b"b" * 32 + b"\n")],
    ).raw
    parsed = message_from_bytes(raw, policy=policy.default)
    alternative = next(p for p in parsed.iter_parts() if p.get_content_subtype() == "alternative")
    assert alternative.get_boundary() == "=_cpsd_" + "b" * 32  # "a" was in the text
    assert parsed.get_boundary() == "=_cpsd_" + "c" * 32  # the attachment is base64
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == body
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["log.txt"]


_HEADER_NAMES = st.sampled_from(["Subject", "To", "From", "Message-ID", "X-CPSD-Loop", "Date"])


@settings(max_examples=400, deadline=None)
@given(
    name=_HEADER_NAMES,
    value=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90),
        st.text(alphabet=st.sampled_from('ab =?\t-é<>@.,;"'), max_size=90),
        st.text(alphabet=st.sampled_from("ab -"), min_size=60, max_size=90),  # near the fold
    ),
)
@example(name="To", value="a" * 72)  # 78 characters with "To: ": one line
@example(name="To", value="a" * 73)  # 79: folded
def test_writing_a_header_directly_gives_the_bytes_the_email_package_would(
    name: str, value: str
) -> None:
    """The shortcut for short plain header lines never changes a byte."""
    from email.policy import compat32

    from gateway.compose import _POLICY

    assert _POLICY._fold(name, value, True) == compat32.clone(linesep="\r\n")._fold(
        name, value, True
    )


def test_the_content_type_line_is_short_enough_to_be_written_unfolded() -> None:
    raw = compose(
        Rendered("t", "v1", "[CPSD-000007] short", "text\n", "<p>text</p>\n"),
        mail_from=SAMPLE_FROM,
        from_name="Desk",
        to=["ops@brightenergy.example"],
        message_id="<cpsd-000007.3@elexon.example>",
    ).raw
    line = next(x for x in raw.split(b"\r\n") if x.startswith(b"Content-Type: multipart/"))
    assert b'boundary="=_cpsd_' in line and len(line) <= 78
