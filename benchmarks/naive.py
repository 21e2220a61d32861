"""The naive poller the benchmarks compare with: one listing (all its pages), then one read of
every listed ticket, every pass. Run as a process, it is the naive `tick`:

    python -m benchmarks.naive URL VIEW_ID EMAIL TOKEN
"""

from __future__ import annotations

import sys

import requests


def naive_pass(url: str, auth: tuple[str, str], view_id: int) -> int:
    """One listing of the view, then every listed ticket read again; the tickets read."""
    with requests.Session() as session:
        session.auth = auth
        page: str | None = f"{url}/api/v2/views/{view_id}/tickets.json"
        params: dict[str, str] | None = {"per_page": "100"}
        ids: list[int] = []
        while page:
            data = session.get(page, params=params, timeout=10).json()
            ids += [t["id"] for t in data["tickets"]]
            page, params = data.get("next_page"), None
        for ticket_id in ids:
            session.get(f"{url}/api/v2/tickets/{ticket_id}.json", timeout=10).json()
    return len(ids)


if __name__ == "__main__":
    base, view, email, token = sys.argv[1:5]
    naive_pass(base, (f"{email}/token", token), int(view))
