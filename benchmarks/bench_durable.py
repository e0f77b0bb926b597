"""What a durable run stores and uploads: SQLite database growth and LangSmith upload bytes for
a large payload over many iterations (issue 13).

    uv run --no-sync python benchmarks/bench_durable.py [--mb 20] [--iterations 10]

Offline: a scripted model (``tests.fakes``), the real sandbox, a SqliteSaver on a temp file,
and LangSmith tracing pointed at a fake HTTP endpoint on 127.0.0.1 that counts the bytes it
receives. Each case is one run; the payload is random hex (incompressible beyond 2:1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Counter(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with _Counter.lock:
            _Counter.received += len(body)
        out = json.dumps({}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PATCH = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fake_langsmith() -> Iterator[type[_Counter]]:
    """A local endpoint that counts request body bytes, with LangSmith's environment pointed
    at it. Call before anything reads that environment (langsmith caches it); switch tracing
    per run with :func:`traced`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ.update(
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        LANGSMITH_API_KEY="fake-key",
    )
    try:
        yield _Counter
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def traced(enabled: bool) -> Iterator[None]:
    """Tracing on or off for the runs inside; waits for uploads to finish on exit."""
    import langsmith
    from langchain_core.tracers.langchain import wait_for_all_tracers

    with langsmith.tracing_context(enabled=enabled):
        yield
    wait_for_all_tracers()


def _db_bytes(db: Path) -> int:
    """The database's size with its write-ahead log folded in (as it is once closed)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def measure(mb: int, iterations: int, *, by_reference: bool, trace: bool) -> dict[str, Any]:
    """One run over an ``mb`` MB payload: database bytes, upload bytes, the answer."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from rlm_graph import build_graph
    from tests.fakes import FakeChatModel, code, final, turn

    replies = [code(f"print({i}, len(context))") for i in range(iterations)] + [final("done")]
    model = FakeChatModel(respond=lambda m: replies[min(turn(m), len(replies) - 1)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.txt"
        text = secrets.token_hex(mb << 19)  # mb MB of ASCII
        path.write_text(text)
        db = Path(tmp) / "checkpoints.db"
        conn = sqlite3.connect(db, check_same_thread=False)
        graph = build_graph(model=model, checkpointer=SqliteSaver(conn), max_iterations=iterations)
        inp: dict[str, Any] = {"query": "How long is the text?"}
        inp.update({"context_file": str(path)} if by_reference else {"context": text})
        config: Any = {"configurable": {"thread_id": "bench"}}
        before = _Counter.received
        with traced(trace):
            out = graph.invoke(inp, config)
        uploaded = _Counter.received - before if trace else None
        conn.close()
        return {
            "payload_bytes": len(text),
            "db_bytes": _db_bytes(db),
            "uploaded_bytes": uploaded,
            "iterations": out["iterations"],
            "answer": out["answer"],
            "first_observation": str(model.prompts[1][-1].content)[:200],
        }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=20)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--json", action="store_true", help="one JSON line per case")
    p.add_argument("--by-value", choices=("both", "yes", "no"), default="both")
    args = p.parse_args()
    refs = {"both": (True, False), "yes": (False,), "no": (True,)}[args.by_value]
    with fake_langsmith():
        _cases(args.mb, args.iterations, refs, args.json)


def _cases(mb: int, iterations: int, refs: tuple[bool, ...], as_json: bool) -> None:
    for by_reference in refs:
        for trace in (False, True):
            r = measure(mb, iterations, by_reference=by_reference, trace=trace)
            if as_json:
                print(json.dumps({"by_reference": by_reference, "trace": trace, **r}), flush=True)
                continue
            how = "context_file" if by_reference else "context by value"
            ratio = r["db_bytes"] / r["payload_bytes"]
            up = "" if r["uploaded_bytes"] is None else f", uploaded {r['uploaded_bytes']:,} B"
            print(f"{how}, tracing {'on' if trace else 'off'}: db {r['db_bytes']:,} B "
                  f"({ratio:.3f}x payload){up}, iterations {r['iterations']}")  # fmt: skip


if __name__ == "__main__":
    main()
