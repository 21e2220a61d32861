"""The documented exit codes, and which error ends in which."""

from __future__ import annotations

from automation.errors import (
    AutomationError,
    ConfigError,
    CredentialsRejected,
    NotFound,
    Refused,
    TemplateError,
    Unreachable,
)

EXIT_OK = 0  # everything that was due was done
EXIT_STEP_FAILED = 1  # a step failed on some ticket; the others went ahead
EXIT_CONFIG = 2  # configuration, flag or template error: nothing was sent
EXIT_UNREACHABLE = 3  # Zendesk unreachable, or it rejected the credentials
EXIT_NOT_FOUND = 4  # the ticket named on the command line does not exist
EXIT_REFUSED = 5  # the ticket's state forbids it (solved, already done, not urgent): nothing sent

# The first matching class decides the exit code; the rest of AutomationError is a failed step.
EXIT_CODES: tuple[tuple[type[AutomationError], int], ...] = (
    (Refused, EXIT_REFUSED),
    (ConfigError, EXIT_CONFIG),
    (TemplateError, EXIT_CONFIG),
    (Unreachable, EXIT_UNREACHABLE),
    (CredentialsRejected, EXIT_UNREACHABLE),
    (NotFound, EXIT_NOT_FOUND),
)


def exit_code(exc: AutomationError) -> int:
    """The documented exit code for an error."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), EXIT_STEP_FAILED)
