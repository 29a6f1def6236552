"""The one Jinja2 environment for admin-edited templates.

Sandboxed (ImmutableSandboxedEnvironment), StrictUndefined so a misspelt variable fails
loudly at validation time, autoescape for the HTML part only, and output-size and time
caps because the sandbox still allows ``'a' * 10**7`` and ``10**10000`` (reliability.md
B43-B44). The caps are enforced inside the render, not only between output chunks:
``*``, ``**`` and ``+`` are intercepted and refused when the result would exceed the
output cap, ``range()`` and every call check the deadline, so a loop that prints nothing
still stops. That keeps rendering in the delivery path cheap (no process per render)
while a hostile template cannot pin a worker or exhaust memory.

Admins see the same checks before anything is sent: ``templates validate`` renders each
template against its sample context (``templates/<name>.sample.toml``) and ``serve``
refuses to start when one fails.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, meta, nodes, select_autoescape
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from parsers.mime import clean_text

PARTS = ("subject", "txt", "html")
SAMPLE_SUFFIX = ".sample.toml"
MAX_POWER_BITS = 4096  # no notice needs a number with more than ~1,200 digits


class RenderError(Exception):
    """A template failed to render; the message names the file, the line and the problem."""

    def __init__(self, filename: str, problem: str, line: int | None = None) -> None:
        self.filename, self.problem, self.line = filename, problem, line
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Rendered:
    name: str
    version: str
    subject: str
    text: str
    html: str


class _Budget(threading.local):
    """Deadline and size cap of the render running on this thread (0 = none running)."""

    deadline: float = 0.0
    max_seconds: float = 0.0
    max_chars: int = 0


_budget = _Budget()


def _check_deadline() -> None:
    if _budget.deadline and time.monotonic() > _budget.deadline:
        raise SecurityError(f"rendering took over {_budget.max_seconds} s")


class _TimedRange:
    """``range()`` for templates: the sandbox's 100,000 item cap plus a deadline per item."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE:
            raise OverflowError(f"range() over {MAX_RANGE} items is not allowed")

    def __iter__(self) -> Iterator[int]:
        for value in self._range:
            _check_deadline()
            yield value

    def __len__(self) -> int:
        return len(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with the resource caps B44 asks for."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _TimedRange

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_deadline()
        cap = _budget.max_chars or 1_000_000
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError(f"{left} ** {right} is too large a number for a template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | bytes | list | tuple) and _is_int(times)
                if sized and len(seq) * max(times, 0) > cap:
                    raise SecurityError(
                        f"repeating a value {times} times is over the {cap} character cap"
                    )
        joins = operator == "+" and isinstance(left, str) and isinstance(right, str)
        if joins and len(left) + len(right) > cap:
            raise SecurityError(f"joined text is over the {cap} character cap")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        return super().call(context, obj, *args, **kwargs)


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not (_is_int(base) and _is_int(exponent)) or exponent <= 0 or abs(base) <= 1:
        return False
    return bool(exponent * math.log2(abs(base)) > MAX_POWER_BITS)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Renderer:
    def __init__(
        self, template_dir: Path, *, max_output_chars: int = 1_000_000, max_seconds: float = 2.0
    ) -> None:
        self.template_dir = template_dir
        self.max_output_chars = max_output_chars
        self.max_seconds = max_seconds
        self.env = _Environment(
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
        outer = (_budget.deadline, _budget.max_seconds, _budget.max_chars)
        _budget.deadline = time.monotonic() + self.max_seconds
        _budget.max_seconds, _budget.max_chars = self.max_seconds, self.max_output_chars
        try:
            template = self.env.get_template(filename)
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > self.max_output_chars:
                    raise RenderError(filename, f"output over {self.max_output_chars} characters")
                _check_deadline()
                chunks.append(chunk)
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(
                filename, f"{type(exc).__name__}: {exc}", _template_line(exc)
            ) from exc
        finally:
            _budget.deadline, _budget.max_seconds, _budget.max_chars = outer
        return "".join(chunks)

    # -- what admins need: variables, samples, validation ---------------------------------

    def variables(self, name: str) -> dict[str, list[str]]:
        """Top-level variables and the attribute paths used under them, over all three files.

        ``{"variables": ["case", "recipient"], "paths": ["case.reference", ...]}``: the
        paths are what a sample context must provide and what README documents.
        """
        names: set[str] = set()
        paths: set[str] = set()
        for part in PARTS:
            path = self.template_dir / f"{name}.{part}.j2"
            if not path.exists():
                continue
            tree = self.env.parse(path.read_text(encoding="utf-8"), filename=path.name)
            undeclared = meta.find_undeclared_variables(tree)
            names |= undeclared
            for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
                dotted = _dotted(node)
                if dotted and dotted.split(".")[0] in undeclared:
                    paths.add(dotted)
        longest = {p for p in paths if not any(q.startswith(p + ".") for q in paths)}
        return {"variables": sorted(names), "paths": sorted(longest)}

    def sample_path(self, name: str) -> Path:
        return self.template_dir / f"{name}{SAMPLE_SUFFIX}"

    def sample(self, name: str) -> dict[str, Any]:
        """The sample context of a template; RenderError naming the file if it is unusable."""
        path = self.sample_path(name)
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RenderError(
                path.name, "no sample context: every template needs one for validate"
            ) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RenderError(path.name, f"cannot read sample context: {exc}") from None

    def validate(self, name: str) -> list[str]:
        """Render one template against its sample in the sandbox; problems as file:line: text."""
        problems: list[str] = []
        for part in PARTS:
            if not (self.template_dir / f"{name}.{part}.j2").exists():
                problems.append(f"{self.template_dir / f'{name}.{part}.j2'}: file is missing")
        if problems:
            return problems
        try:
            rendered = self.render(name, self.sample(name))
        except RenderError as exc:
            return [
                f"{self.template_dir / exc.filename}{f':{exc.line}' if exc.line else ''}: "
                f"{exc.problem}"
            ]
        if not rendered.subject:
            problems.append(f"{self.template_dir / f'{name}.subject.j2'}: subject is empty")
        return problems

    def validate_all(self) -> dict[str, list[str]]:
        """Every template's problems (an empty list when it renders cleanly)."""
        return {name: self.validate(name) for name in self.names()}


def _dotted(node: nodes.Node) -> str | None:
    """``case.parent.reference`` for a Getattr/Getitem chain rooted at a Name, else None."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str):
                return None
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return ".".join(reversed(parts))
        else:
            return None


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
