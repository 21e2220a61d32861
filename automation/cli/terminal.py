"""What the command line prints is shown, never obeyed: customer text (a subject, a comment)
may carry terminal control sequences that would rewrite the operator's screen."""

from __future__ import annotations

import re
from typing import TextIO

# C0 controls but newline and tab, DEL, and C1 controls (ESC-less CSI included).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), not sent."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class PrintableStream:
    """A text stream that writes `printable` text to the one it wraps."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)
