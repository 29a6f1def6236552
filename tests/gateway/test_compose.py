from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.compose import compose, new_message_id
from gateway.render import Renderer, RenderError

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
