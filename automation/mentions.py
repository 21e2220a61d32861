"""People and groups named in a queued Slack line, mentioned only when it is posted.

A line waits in the journal's outbox until Slack answers; who it mentions is looked up then
(`chat.Chat.resolve`). Until then it names them by token: `<user:EMAIL>`, `<group:HANDLE>`.
Customer text is escaped before it enters a line, so it can never hold a token.
"""

from __future__ import annotations

import re

TOKEN = re.compile(r"<(user|group):([^<>|\s]+)>")
TOKEN_UNSAFE = re.compile(r"[<>|\s]")


def user_token(email: object) -> str | None:
    """A person named by email, mentioned when the line is posted."""
    if not isinstance(email, str) or "@" not in email or TOKEN_UNSAFE.search(email):
        return None
    return f"<user:{email}>"


def group_token(handle: str) -> str:
    return f"<group:{handle}>"


def token_name(token: str) -> str:
    """The email or handle a token names."""
    match = TOKEN.fullmatch(token)
    return match.group(2) if match else token


def readable(text: str) -> str:
    """A queued line as a person reads it before it is posted (`@name` for each mention)."""
    return TOKEN.sub(lambda m: f"@{m.group(2)}", text)
