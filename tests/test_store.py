"""The state file is a cache and a log: when it fails, the worker goes on without it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from automation.store import Entry, Store
from tests.conftest import fill_the_disk

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def entry(n: int = 1) -> Entry:
    return Entry(at=NOW, ticket_id=n, step="acknowledge", outcome="posted", detail=f"#{n}")


@pytest.mark.parametrize("garbage", [b"not a database at all" * 100, b"SQLite format 3\x00",
                                     b""])
def test_a_garbage_state_file_is_moved_aside_and_a_fresh_one_started(
        tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(garbage)

    store = Store(path)
    store.record(entry())

    assert store.problem is None
    assert [e.detail for e in Store(path).journal()] == ["#1"]
    if garbage:
        [aside] = tmp_path.glob("state.sqlite3.corrupt-*")
        assert aside.read_bytes() == garbage  # moved, never deleted


def test_a_full_disk_keeps_the_journal_in_memory_and_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.record(entry(1))
    fill_the_disk(store)

    store.record(entry(2))

    assert store.problem is not None and "full" in store.problem
    assert "state.sqlite3" in store.problem
    assert [e.detail for e in store.journal()] == ["#1", "#2"]  # kept what it had


def test_a_read_only_state_file_keeps_the_journal_in_memory(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.db.execute("PRAGMA query_only = ON")  # as a read-only file answers writes

    store.record(entry())

    assert store.problem is not None and "readonly" in store.problem
    assert [e.detail for e in store.journal()] == ["#1"]


def test_a_state_file_in_a_folder_that_cannot_be_made_is_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    store = Store(blocker / "state.sqlite3")
    store.record(entry())

    assert store.problem is not None
    assert [e.detail for e in store.journal()] == ["#1"]


def test_memory_failing_too_is_a_bug_with_its_traceback(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.db.execute("PRAGMA query_only = ON")
    store.record(entry())  # now in memory
    store.db.execute("PRAGMA query_only = ON")

    with pytest.raises(sqlite3.OperationalError):
        store.record(entry(2))


def test_one_tracked_ticket_and_every_thread_read_at_once(tmp_path: Path) -> None:
    from automation.store import TrackedTicket

    store = Store(tmp_path / "state.sqlite3")
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    for ticket_id, active in ((1, True), (2, False)):
        store.track(TrackedTicket(ticket_id, f"#{ticket_id}", "2026-01-05T09:00:00Z", "new",
                                  "acknowledge", now, active, now))
    store.remember_thread(1, "C1", "1767603600.000100")
    store.remember_thread(2, "C2", "1767603601.000100")

    assert store.tracked_ticket(2) == store.tracked()[2]
    assert store.tracked_ticket(2).active is False
    assert store.tracked_ticket(3) is None
    assert store.threads() == {1: ("C1", "1767603600.000100"), 2: ("C2", "1767603601.000100")}


def test_a_commit_is_written_ahead_and_not_flushed_each_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")

    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store.db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL: at checkpoints
