"""Webhook deliveries from Zendesk and PagerDuty: checked, then read for the ticket they name.

A delivery is a hint, never a fact: all it gives is a ticket to handle now, through the same
path as a pass. So a duplicate, a late one or one out of order does no harm; what is refused
is a delivery that is not signed with our secret, is older than the window, repeats one
already taken, is too large, or is not JSON. Pure functions and one small memory of what
was taken: no I/O, and the time is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_BODY_BYTES = 256 * 1024
WINDOW = timedelta(minutes=5)

ZENDESK_SIGNATURE = "x-zendesk-webhook-signature"
ZENDESK_TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
PAGERDUTY_SIGNATURE = "x-pagerduty-signature"

# Outcomes, as the metric counts them.
ACCEPTED = "accepted"
BAD_SIGNATURE = "bad signature"
STALE = "stale"
REPLAYED = "replayed"
MALFORMED = "malformed"
TOO_LARGE = "too large"
UNKNOWN_TICKET = "unknown ticket"
NOT_CONFIGURED = "not configured"

# Our incident keys (zendesk-<id>, zendesk-<id>-manager), or the ticket in the title or
# URL, as Zendesk's own PagerDuty integration writes it.
_KEY = re.compile(r"^zendesk-(\d+)(?:-manager)?$")
_TITLE = re.compile(r"(?:#|/tickets/|ticket )\s*(\d+)\b")


@dataclass(frozen=True)
class Verdict:
    """What to answer a delivery: its outcome, the HTTP status, and the ticket it names."""

    outcome: str
    status: int
    ticket_id: int | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED


class Seen:
    """Deliveries taken within the window (by signature or event id): a replay is refused."""

    def __init__(self) -> None:
        self._taken: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def first_time(self, key: str, now: datetime) -> bool:
        with self._lock:
            for old in [k for k, at in self._taken.items() if now - at > WINDOW]:
                del self._taken[old]
            if key in self._taken:
                return False
            self._taken[key] = now
            return True


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's signature: base64 of HMAC-SHA256 over the timestamp followed by the body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def pagerduty_signature(secret: str, body: bytes) -> str:
    """One of PagerDuty's signatures: `v1=` and the hex HMAC-SHA256 of the body."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_zendesk(secret: str, headers: Mapping[str, str], body: bytes, now: datetime,
                  seen: Seen) -> Verdict:
    """A Zendesk webhook delivery (a trigger's, or a ticket event subscription's)."""
    if len(body) > MAX_BODY_BYTES:
        return Verdict(TOO_LARGE, 413)
    signature = headers.get(ZENDESK_SIGNATURE, "")
    timestamp = headers.get(ZENDESK_TIMESTAMP, "")
    expected = zendesk_signature(secret, timestamp, body)
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        return Verdict(BAD_SIGNATURE, 401)
    sent_at = _moment(timestamp)
    if sent_at is None or abs(now - sent_at) > WINDOW:
        return Verdict(STALE, 400, detail=f"timestamp {timestamp!r} is not within 5 minutes")
    payload = _json(body)
    if payload is None:
        return Verdict(MALFORMED, 400, detail="the body is not a JSON object")
    if not seen.first_time("zendesk:" + signature, now):
        return Verdict(REPLAYED, 400, detail="this delivery was taken already")
    ticket_id = zendesk_ticket(payload)
    if ticket_id is None:
        return Verdict(UNKNOWN_TICKET, 202, detail="no ticket id in the delivery")
    return Verdict(ACCEPTED, 202, ticket_id)


def check_pagerduty(secret: str, headers: Mapping[str, str], body: bytes, now: datetime,
                    seen: Seen) -> Verdict:
    """A PagerDuty v3 webhook delivery (incident triggered, acknowledged, reassigned...)."""
    if len(body) > MAX_BODY_BYTES:
        return Verdict(TOO_LARGE, 413)
    expected = pagerduty_signature(secret, body).encode()
    offered = [s.strip() for s in headers.get(PAGERDUTY_SIGNATURE, "").split(",")]
    # Every offered signature is compared (several while a secret is being rotated).
    matches = [hmac.compare_digest(s.encode(), expected) for s in offered if s]
    if not any(matches):
        return Verdict(BAD_SIGNATURE, 401)
    payload = _json(body)
    event = payload.get("event") if payload else None
    if not isinstance(event, dict):
        return Verdict(MALFORMED, 400, detail="no event object in the body")
    occurred = _moment(str(event.get("occurred_at", "")))
    if occurred is None or now - occurred > WINDOW:
        return Verdict(STALE, 400, detail="the event occurred more than 5 minutes ago")
    if not seen.first_time("pagerduty:" + str(event.get("id", "")), now):
        return Verdict(REPLAYED, 400, detail="this delivery was taken already")
    ticket_id = pagerduty_ticket(event.get("data"))
    if ticket_id is None:
        return Verdict(UNKNOWN_TICKET, 202, detail="the incident names no Zendesk ticket")
    return Verdict(ACCEPTED, 202, ticket_id)


def zendesk_ticket(payload: dict[str, Any]) -> int | None:
    """The ticket a Zendesk delivery names: a trigger's own body (`ticket_id`, or
    `ticket.id`), or an event subscription's (`detail.id` of a `zen:event-type:ticket.*`)."""
    candidates: list[Any] = [payload.get("ticket_id")]
    ticket = payload.get("ticket")
    if isinstance(ticket, dict):
        candidates.append(ticket.get("id"))
    detail = payload.get("detail")
    if isinstance(detail, dict) and str(payload.get("type", "")).startswith(
            "zen:event-type:ticket."):
        candidates.append(detail.get("id"))
    return next((n for n in map(_number, candidates) if n is not None), None)


def pagerduty_ticket(data: Any) -> int | None:
    """The ticket an incident event names: by our incident key, else the ticket's number or
    URL in the title (Zendesk's own integration)."""
    if not isinstance(data, dict) or data.get("type") not in ("incident", "incident_reference"):
        return None
    match = _KEY.match(str(data.get("incident_key") or ""))
    if match is None:
        match = _TITLE.search(str(data.get("title") or ""))
    return int(match.group(1)) if match else None


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
