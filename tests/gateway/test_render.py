"""The template sandbox: validation against samples, resource caps, escapes (B43, B44, B46)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from gateway import render
from gateway.render import Renderer, RenderError

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"


def broken(tmp_path: Path, name: str, part: str, text: str) -> Renderer:
    """A copy of the real templates with one file replaced."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    (target / f"{name}.{part}.j2").write_text(text)
    return Renderer(target, max_seconds=0.5)


def test_every_shipped_template_validates_against_its_sample() -> None:
    renderer = Renderer(TEMPLATES)
    results = renderer.validate_all()
    assert "staff_alert" in results and "acknowledgement" in results
    assert results == {name: [] for name in renderer.names()}


def test_variables_are_names_and_attribute_paths_over_all_three_files() -> None:
    found = Renderer(TEMPLATES).variables("staff_alert")
    assert found["variables"] == ["alert", "case", "mail"]
    assert {"alert.kind", "alert.reason", "mail.outbox_id", "case.reference"} <= set(found["paths"])
    assert not any(p.startswith("r.") for p in found["paths"])  # loop variables are not inputs
    assert "case" not in found["paths"]  # only the longest paths are listed


@pytest.mark.parametrize(
    ("part", "text", "line", "problem"),
    [
        ("txt", "Hello\n\n{{ case.nope }}\n", 3, "UndefinedError"),
        ("txt", "Hello\n{{ recipient_typo.party }}\n", 2, "UndefinedError"),
        ("html", "<p>\n{{ ''.__class__ }}\n", 2, "SecurityError"),
        ("html", "{{ case|attr('__class__') }}", 1, "SecurityError"),
        ("txt", "x\n{{ '{0.__class__}'.format(case) }}", 2, "SecurityError"),
        ("subject", "{{ 'a' * 10**8 }}", 1, "SecurityError: repeating a value"),
        ("txt", "\n\n\n{{ 10 ** 1000000 }}", 4, "too large a number"),
    ],
)
def test_a_broken_template_fails_validate_with_file_line_and_problem(
    tmp_path: Path, part: str, text: str, line: int, problem: str
) -> None:
    renderer = broken(tmp_path, "acknowledgement", part, text)
    started = time.monotonic()
    problems = renderer.validate("acknowledgement")
    assert time.monotonic() - started < 2
    assert len(problems) == 1
    assert problems[0].startswith(f"{renderer.template_dir}/acknowledgement.{part}.j2:{line}: ")
    assert problem in problems[0]
    others = {n: p for n, p in renderer.validate_all().items() if n != "acknowledgement"}
    assert not any(others.values())


def test_a_loop_that_prints_nothing_still_stops_at_the_time_cap(tmp_path: Path) -> None:
    renderer = broken(
        tmp_path,
        "acknowledgement",
        "txt",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    started = time.monotonic()
    [problem] = renderer.validate("acknowledgement")
    assert time.monotonic() - started < 1.5
    assert "acknowledgement.txt.j2:1: SecurityError: rendering took over 0.5 s" in problem


def test_output_over_the_cap_is_refused(tmp_path: Path) -> None:
    renderer = broken(
        tmp_path, "acknowledgement", "html", "{% for i in range(9000) %}{{ 'x' * 999 }}{% endfor %}"
    )
    [problem] = renderer.validate("acknowledgement")
    assert "output over 1000000 characters" in problem


def test_joining_text_past_the_cap_is_refused(tmp_path: Path) -> None:
    renderer = broken(tmp_path, "acknowledgement", "txt", "{% set s = 'x' * 900000 %}{{ s + s }}")
    [problem] = renderer.validate("acknowledgement")
    assert "joined text is over" in problem


def test_a_missing_sample_or_part_is_named(tmp_path: Path) -> None:
    renderer = broken(tmp_path, "acknowledgement", "txt", "ok")
    (renderer.template_dir / "acknowledgement.sample.toml").unlink()
    (renderer.template_dir / "closure.html.j2").unlink()
    results = renderer.validate_all()
    assert "acknowledgement.sample.toml" in results["acknowledgement"][0]
    assert results["closure"] == [f"{renderer.template_dir}/closure.html.j2: file is missing"]


def test_ordinary_template_arithmetic_and_ranges_still_work(tmp_path: Path) -> None:
    renderer = broken(
        tmp_path,
        "acknowledgement",
        "txt",
        "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ range(3)|list }} {{ range(4)|length }} "
        "{{ 'x' + 'y' }} {% for i in range(2) %}{{ loop.index }}{% endfor %}",
    )
    text = renderer.render("acknowledgement", renderer.sample("acknowledgement")).text
    assert text == "ababab 1024 [0, 1, 2] 4 xy 12"


def test_the_budget_is_released_after_a_failed_render(tmp_path: Path) -> None:
    renderer = broken(tmp_path, "acknowledgement", "txt", "{{ nope }}")
    with pytest.raises(RenderError):
        renderer.render("acknowledgement", renderer.sample("acknowledgement"))
    assert render._budget.deadline == 0.0


def test_html_is_escaped_text_is_not_and_the_subject_is_one_line() -> None:
    renderer = Renderer(TEMPLATES)
    context = renderer.sample("acknowledgement")
    context["case"]["subject"] = "<script>alert(1)</script>&amp;\r\nBcc: victim@evil.example"
    context["recipient"]["party"] = "<b>Bright</b> & Co"
    rendered = renderer.render("acknowledgement", context)
    assert "&lt;b&gt;Bright&lt;/b&gt; &amp; Co" in rendered.html
    assert "<b>Bright</b> & Co" in rendered.text
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.subject.endswith("<script>alert(1)</script>&amp; Bcc: victim@evil.example")


def test_staff_alert_renders_without_a_case_and_for_a_rate_limit() -> None:
    renderer = Renderer(TEMPLATES)
    context = renderer.sample("staff_alert")
    context["case"] = None
    context["alert"]["kind"] = "rate_limited"
    rendered = renderer.render("staff_alert", context)
    assert not rendered.subject.startswith("[")
    assert "held, not sent" in rendered.text
    assert "outbox retry" not in rendered.text
    assert "CPSD reference" not in rendered.text
