"""One error tree: the CLI catches only ``AutomationError`` and turns it into one line."""

from __future__ import annotations


class AutomationError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(AutomationError):
    """Raised when config.toml, a flag or the environment is missing or malformed."""


class InputError(ConfigError):
    """Raised when a command's own input (a flag's value, a notes or brief file) is unusable."""


class Refused(AutomationError):
    """Raised when the ticket's state forbids the command (solved, already done, not urgent)."""


class TemplateError(AutomationError):
    """Raised when a template cannot be loaded or rendered (names template, line, variable)."""


class UpstreamError(AutomationError):
    """Raised when a service answers with an error; names service, method, path and status."""

    def __init__(
        self,
        service: str,
        method: str,
        path: str,
        status: int | None,
        excerpt: str = "",
        hint: str = "",
    ) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.excerpt = excerpt
        status_text = f"HTTP {status}" if status is not None else "no answer"
        message = f"{service} {method} {path}: {status_text}"
        if excerpt:
            message += f": {excerpt}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class Unreachable(UpstreamError):
    """Raised when a service cannot be reached, or keeps failing past the retry budget."""


class CredentialsRejected(UpstreamError):
    """Raised when a service answers 401/403 to our credentials."""


class NotFound(UpstreamError):
    """Raised when a service answers 404 for a record we asked for."""


class Conflict(UpstreamError):
    """Raised when a safe update is refused (409) because the ticket changed since it was read."""


class WriteUncertain(UpstreamError):
    """Raised when a write got a 5xx or lost its connection: it may or may not have applied."""


class Rejected(UpstreamError):
    """Raised when a service refuses a request as invalid (4xx other than 401/403/404/409/429)."""


class BudgetSpent(Rejected):
    """Raised when a write would pass Zendesk's per-ticket update limit; nothing was sent."""
