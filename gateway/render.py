"""The one Jinja2 environment for admin-edited templates.

Sandboxed (ImmutableSandboxedEnvironment), StrictUndefined so a misspelt variable fails
loudly at validation time, autoescape for the HTML part only, and output-size and time
caps because the sandbox still allows ``'a' * 10**7`` (reliability.md B43-B44).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from parsers.mime import clean_text

PARTS = ("subject", "txt", "html")


class RenderError(Exception):
    """A template failed to render; the message names the file and the problem."""


@dataclass(frozen=True)
class Rendered:
    name: str
    version: str
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(
        self, template_dir: Path, *, max_output_chars: int = 1_000_000, max_seconds: float = 2.0
    ) -> None:
        self.template_dir = template_dir
        self.max_output_chars = max_output_chars
        self.max_seconds = max_seconds
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(template_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
        )

    def names(self) -> list[str]:
        return sorted({p.name.split(".")[0] for p in self.template_dir.glob("*.subject.j2")})

    def version(self, name: str) -> str:
        """Hash of the three files, recorded on each outbox row: what exactly did we send."""
        digest = hashlib.sha256()
        for part in PARTS:
            path = self.template_dir / f"{name}.{part}.j2"
            digest.update(path.read_bytes() if path.exists() else b"")
        return digest.hexdigest()[:16]

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        subject = clean_text(self._render_part(name, "subject", context))
        return Rendered(
            name=name,
            version=self.version(name),
            subject=subject,
            text=self._render_part(name, "txt", context),
            html=self._render_part(name, "html", context),
        )

    def _render_part(self, name: str, part: str, context: Mapping[str, Any]) -> str:
        filename = f"{name}.{part}.j2"
        deadline = time.monotonic() + self.max_seconds
        try:
            template = self.env.get_template(filename)
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > self.max_output_chars:
                    raise RenderError(f"{filename}: output over {self.max_output_chars} characters")
                if time.monotonic() > deadline:
                    raise RenderError(f"{filename}: rendering took over {self.max_seconds} s")
                chunks.append(chunk)
        except RenderError:
            raise
        except Exception as exc:
            line = _template_line(exc)
            where = f"{filename}:{line}" if line else filename
            raise RenderError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return "".join(chunks)


def _template_line(exc: BaseException) -> int | None:
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            found = tb.tb_lineno
        tb = tb.tb_next
    return found
