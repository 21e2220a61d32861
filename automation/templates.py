"""Message templates: Jinja2, sandboxed, strict. Customer text is data, never template source.

Each template's visibility is fixed here, not chosen by the caller: a comment's ``public`` flag
comes only from this registry, so an internal template can never be posted publicly.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.resources
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import TemplateError

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


class Visibility(enum.Enum):
    PUBLIC = "public"
    INTERNAL = "internal"


# Every template the product ships, and who may read what it renders.
REGISTRY: dict[str, Visibility] = {
    "acknowledgement": Visibility.PUBLIC,
    "follow_up": Visibility.PUBLIC,
    "bridge_closed": Visibility.PUBLIC,
    "off_hours": Visibility.PUBLIC,
    "post_call": Visibility.PUBLIC,
    "post_call_internal": Visibility.INTERNAL,
    "brief": Visibility.INTERNAL,
    "brief_link": Visibility.INTERNAL,
    "not_emergency": Visibility.INTERNAL,
    "escalation": Visibility.INTERNAL,
    "slack_thread_note": Visibility.INTERNAL,
    "gitlab_issue_note": Visibility.INTERNAL,
}

SUFFIX = ".j2"


@dataclass(frozen=True)
class Rendered:
    """A rendered comment; ``public`` is the template's registered visibility."""

    template: str
    body: str
    public: bool

    @property
    def first_line(self) -> str:
        return summary_line(self.body)


def summary_line(body: str, width: int | None = None) -> str:
    """The first line that says something (a salutation like "Hello Dana," is skipped)."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    line = next((ln for ln in lines if not ln.endswith(",")), lines[0] if lines else "")
    if width is not None and len(line) > width:
        line = line[:width - 1] + "…"
    return line


def default_template_dir() -> Path:
    """The templates shipped with the package (or the repo's `templates/` when run from source)."""
    try:
        shipped = Path(str(importlib.resources.files("automation.default_templates")))
        if (shipped / ("acknowledgement" + SUFFIX)).is_file():
            return shipped
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "templates"


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_minutes(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes} minute" + ("" if minutes == 1 else "s")


class Templates:
    """Loads templates from an override folder first, then the shipped defaults."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self.searchpath = [str(default_template_dir())]
        if override_dir is not None:
            self.searchpath.insert(0, str(override_dir))
        self._env: SandboxedEnvironment | None = None

    @property
    def env(self) -> SandboxedEnvironment:
        """Jinja, loaded at the first render: an idle `tick` renders nothing."""
        if self._env is None:
            self._env = _environment(tuple(self.searchpath), self.fingerprint)
        return self._env

    @functools.cached_property
    def fingerprint(self) -> str:
        """What the templates are: every file's name and text, in the order they are found
        (read once an instance: validation and Jinja's environment both ask)."""
        digest = hashlib.sha256()
        for folder in self.searchpath:
            for path in sorted(Path(folder).rglob(f"*{SUFFIX}")):
                digest.update(f"{path}\0".encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def render(self, name: str, context: dict[str, Any]) -> Rendered:
        """Render ``name`` with ``context``; the result's visibility is the registry's."""
        visibility = REGISTRY.get(name)
        if visibility is None:
            raise TemplateError(f"unknown template {name!r}; known: {', '.join(sorted(REGISTRY))}")
        import jinja2

        filename = name + SUFFIX
        try:
            template = self.env.get_template(filename)
            body = template.render(**context).strip()
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.filename or filename} line {exc.lineno}: {exc.message}"
            ) from None
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {filename} not found in {self.env.loader.searchpath}"  # type: ignore[union-attr]
                                ) from None
        except (jinja2.TemplateError, ArithmeticError, LookupError, AttributeError, TypeError,
                ValueError) as exc:
            # Whatever a template's own expressions raise is a template error, not a bug here.
            line = _template_line(exc, filename)
            where = f"template {filename}" + (f" line {line}" if line else "")
            raise TemplateError(f"{where}: {exc}") from None
        if not body:
            raise TemplateError(f"template {filename} rendered an empty comment")
        return Rendered(template=name, body=body, public=visibility is Visibility.PUBLIC)


@functools.lru_cache(maxsize=16)
def _environment(searchpath: tuple[str, ...], fingerprint: str) -> SandboxedEnvironment:
    """One Jinja environment for each list of folders and what is in them, shared by the
    process's Templates: a template is compiled once, not once for each worker built. A file
    added, changed or removed makes another fingerprint, so another environment."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(list(searchpath)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text comment bodies, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = format_time
    env.filters["minutes"] = format_minutes
    return env


def _template_line(exc: BaseException, filename: str) -> int | None:
    """Jinja rewrites tracebacks so template frames carry the template's own line numbers."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(filename):
            line = frame.lineno
    return line
