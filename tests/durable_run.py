"""A run the crash tests start, SIGKILL and resume in a fresh process (real processes).

    python -m tests.durable_run DB THREAD CALL_LOG [--resume] [--child] [--sleep S]
        [--max-llm-calls N]

The scripted root model: block 1 sets ``x = 41``; block 2 sleeps S seconds (``--child``: asks
a child run, which sleeps, for a word); block 3 answers ``x + 1`` (plus the child's word).
Every model call appends one line to CALL_LOG, so calls are counted across processes. Each
custom event is printed as one JSON line on stdout; the last line is the result.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_graph import build_graph
from tests.fakes import FakeChatModel, code, depth, final, is_subcall, turn


def model(call_log: str, sleep: float, child: bool) -> FakeChatModel:
    """The scripted model; each call is logged to ``call_log`` first."""
    root = [
        code("x = 41\nprint('x set')"),
        code(
            "w = rlm_query('say a word', 'abc')\nprint(w)"
            if child
            else f"import time\ntime.sleep({sleep})\nprint('slept')"
        ),
        code("final_answer(str(x + 1) + (' ' + w if 'w' in globals() else ''))"),
    ]
    kid = [code(f"import time\ntime.sleep({sleep})\nprint('done')"), final("bird")]

    def respond(messages: list[BaseMessage]) -> str:
        with open(call_log, "a") as f:
            f.write(f"{depth(messages)} {turn(messages)}\n")
        if is_subcall(messages):
            return "sub"
        script = root if depth(messages) == 0 else kid
        return script[min(turn(messages), len(script) - 1)]

    return FakeChatModel(respond=respond)


def _checkpointer(db: str) -> Any:
    """SQLite for a path; Postgres (through a connection pool) for a postgresql:// URL."""
    if not db.startswith("postgresql://"):
        return SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    pool: Any = ConnectionPool(db, kwargs=kwargs, open=True, max_size=8)
    saver = PostgresSaver(pool)
    saver.setup()
    return saver


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("thread")
    p.add_argument("call_log")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--child", action="store_true")
    p.add_argument("--sleep", type=float, default=3.0)
    p.add_argument("--max-llm-calls", type=int, default=None)
    args = p.parse_args(argv)
    graph = build_graph(
        model=model(args.call_log, args.sleep, args.child),
        checkpointer=_checkpointer(args.db),
        max_llm_calls=args.max_llm_calls,
    )
    config: Any = {"configurable": {"thread_id": args.thread}}
    inp = None if args.resume else {"query": "What is x + 1?", "context": "some text"}
    for _ns, event in graph.stream(inp, config, stream_mode="custom", subgraphs=True):
        print(json.dumps(event, default=str), flush=True)
    values = graph.get_state(config).values
    result = {k: values.get(k) for k in ("answer", "stopped_reason", "iterations", "usage")}
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
