"""One question on a follow-up thread, in its own process (the restart tests start two).

    python -m tests.followup_run DB THREAD CALL_LOG QUERY [--context TEXT] [--sub WORD]

The scripted model (:func:`model`) runs one block per question (:data:`SCRIPTS`), then answers
what the block printed. Every model call appends ``root`` or ``sub`` to CALL_LOG, so calls are
counted across processes; sub-calls answer ``WORD``. The last stdout line is the result.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_graph import build_graph, close_runs
from tests.fakes import FakeChatModel, code, final, is_subcall, last_text, question, turn

SCRIPTS = {
    "Count the words.": "counts = len(context.split())\nw = llm_query('name it')\nprint(counts)",
    "Double the count.": "print(counts * 2, w, query)",
    "Words in both?": "print(len(context_0.split()) + len(context.split()), context is context_1)",
    "Which contexts?": "print(context_0, '|', context_1, '|', context, '|', counts)",
}


def printed(messages: list[BaseMessage]) -> str:
    """What the last observation shows the block printed."""
    m = re.search(r"Observation:\n(.*?)\n\n\(", last_text(messages), re.S)
    return m.group(1).strip() if m else "?"


def model(
    call_log: str | None = None, sub: str = "forty", scripts: dict[str, str] | None = None
) -> FakeChatModel:
    """The scripted model: one block per question, then the printed text as the answer."""
    table = SCRIPTS if scripts is None else scripts

    def respond(messages: list[BaseMessage]) -> str:
        kind = "sub" if is_subcall(messages) else "root"
        if call_log is not None:
            with open(call_log, "a") as f:
                f.write(kind + "\n")
        if kind == "sub":
            return sub
        return code(table[question(messages)]) if turn(messages) == 0 else final(printed(messages))

    return FakeChatModel(respond=respond)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("thread")
    p.add_argument("call_log")
    p.add_argument("query")
    p.add_argument("--context", default=None)
    p.add_argument("--sub", default="forty")
    args = p.parse_args(argv)
    saver = SqliteSaver(sqlite3.connect(args.db, check_same_thread=False))
    fake = model(args.call_log, args.sub)
    graph = build_graph(model=fake, checkpointer=saver)
    inp: dict[str, Any] = {"query": args.query}
    if args.context is not None:
        inp["context"] = args.context
    try:
        out = graph.invoke(inp, {"configurable": {"thread_id": args.thread}})
    finally:
        close_runs(graph)
    first = str(fake.prompts[0][1].content)
    print(json.dumps({"answer": out["answer"], "usage": out["usage"], "prompt": first}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
