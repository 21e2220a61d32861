"""The command line: `run(argv)` does the work and returns the exit code; `main()` wires it.

`parser` reads the command line, `handlers` and `writing` run a command and hand its result to
`views`, which prints it. Integrations (PagerDuty, Slack, the sandbox, the demo) are imported
only by the handlers that use them, so a cron `tick` loads only what it needs.
"""

from __future__ import annotations

from automation.cli.app import main, run
from automation.cli.exits import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_STEP_FAILED,
    EXIT_UNREACHABLE,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_STEP_FAILED",
    "EXIT_UNREACHABLE",
    "main",
    "run",
]
