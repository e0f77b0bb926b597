"""The CLI's threads: where they are kept, what each was started with, and their status.

One SQLite file, ``$XDG_STATE_HOME/rlm-graph/threads.db`` (default
``~/.local/state/rlm-graph``), holds LangGraph's checkpoints, the payload store beside them
and a small ``rlm_cli_threads`` table: per thread, the model spec and settings it was started
with, so ``rlm-graph resume ID`` rebuilds the same graph.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "threads.db"


def state_dir() -> Path:
    """``$XDG_STATE_HOME/rlm-graph``, or ``~/.local/state/rlm-graph``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rlm-graph"


def new_thread_id() -> str:
    """A fresh thread id (short enough to type)."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class ThreadInfo:
    """What a thread was started with."""

    thread_id: str
    created: float
    query: str
    model: str
    sub_model: str | None
    settings: dict[str, Any]


class ThreadBook:
    """The state directory's database: a checkpointer, and what each thread was started with."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                f"cannot create the state directory {self.directory}: {exc.strerror}; "
                "set XDG_STATE_HOME or pass --no-checkpoint"
            ) from None
        self.path = self.directory / DB_NAME
        self.conn = sqlite3.connect(self.path, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS rlm_cli_threads (thread_id TEXT PRIMARY KEY, "
            "created REAL, query TEXT, model TEXT, sub_model TEXT, settings TEXT)"
        )
        self.conn.commit()

    def checkpointer(self) -> Any:
        """A ``SqliteSaver`` on this database (build_graph adds the payload store beside it)."""
        from langgraph.checkpoint.sqlite import SqliteSaver

        return SqliteSaver(self.conn)

    def record(self, info: ThreadInfo) -> None:
        """Remember what ``info.thread_id`` was started with (a re-used id is overwritten)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO rlm_cli_threads VALUES (?, ?, ?, ?, ?, ?)",
            (
                info.thread_id,
                info.created,
                info.query,
                info.model,
                info.sub_model,
                json.dumps(info.settings),
            ),
        )
        self.conn.commit()

    def get(self, thread_id: str) -> ThreadInfo | None:
        """What a thread was started with, or None for an unknown id."""
        row = self.conn.execute(
            "SELECT * FROM rlm_cli_threads WHERE thread_id = ?", (thread_id,)
        ).fetchone()
        return _info(row) if row else None

    def all(self) -> list[ThreadInfo]:
        """Every thread, newest first."""
        rows = self.conn.execute("SELECT * FROM rlm_cli_threads ORDER BY created DESC").fetchall()
        return [_info(r) for r in rows]

    def forget(self, thread_ids: list[str]) -> None:
        """Drop what ``thread_ids`` were started with (their checkpoints are deleted first)."""
        self.conn.executemany(
            "DELETE FROM rlm_cli_threads WHERE thread_id = ?", [(t,) for t in thread_ids]
        )
        self.conn.commit()

    def size(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def vacuum(self) -> str | None:
        """Give the space of deleted rows back to the file system; None, or why not now."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=2.0)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            return str(exc)
        finally:
            conn.close()
        return None

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def _info(row: tuple[Any, ...]) -> ThreadInfo:
    return ThreadInfo(row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "{}"))


def status_of(graph: Any, thread_id: str) -> dict[str, Any]:
    """A thread's status (``done``, ``waiting`` for a resume value, ``stopped``: cut short,
    resumable, or ``new``) with its answer so far."""
    snap = graph.get_state({"configurable": {"thread_id": thread_id}})
    values = snap.values or {}
    if any(task.interrupts for task in snap.tasks):
        status = "waiting"
    elif snap.next:
        status = "stopped"
    elif values.get("answer"):
        status = "done"
    else:
        status = "new"
    return {
        "thread_id": thread_id,
        "status": status,
        "iterations": values.get("iterations", 0),
        "answer": values.get("answer") or "",
    }


def format_threads(rows: list[dict[str, Any]]) -> str:
    """The ``rlm-graph threads`` table: id, status, started, query, answer (one line each)."""
    if not rows:
        return "no threads yet"
    lines = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        query = " ".join(str(r["query"]).split())[:40]
        answer = " ".join(str(r["answer"]).split())[:40]
        lines.append(f"{r['thread_id']}  {r['status']:<8} {when}  {query!r}  → {answer!r}")
    return "\n".join(lines)
