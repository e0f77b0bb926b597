"""LangSmith tracing against a fake LangSmith endpoint on 127.0.0.1: a ``tool`` run per code
block, with the block's sub-calls (plain and recursive) nested under it, tagged ``rlm:sub``."""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


class _LangSmith(BaseHTTPRequestHandler):
    """Accepts run ingestion: multipart, batch, and single POST/PATCH."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int = 200, body: bytes = b"{}") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(200, b'{"version": "test"}')

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self) -> None:
        body = self._body()
        if self.path.endswith("/runs/multipart"):
            self._multipart(body)
        elif self.path.endswith("/runs/batch"):
            data = json.loads(body)
            for op in ("post", "patch"):
                for run in data.get(op) or []:
                    self.server.merge(run)
        elif self.path.endswith("/runs"):
            self.server.merge(json.loads(body))
        self._reply(202)

    def do_PATCH(self) -> None:
        run = json.loads(self._body())
        run["id"] = self.path.rstrip("/").rsplit("/", 1)[-1]
        self.server.merge(run)
        self._reply(200)

    def _multipart(self, body: bytes) -> None:
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = json.loads(part.get_payload(decode=True) or b"null")
            _op, run_id, *field = str(name).split(".")
            if field:  # post.<id>.inputs / patch.<id>.outputs ...
                self.server.merge({"id": run_id, field[0]: data})
            else:
                self.server.merge({"id": run_id, **data})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LangSmith)
        self.runs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def merge(self, run: dict[str, Any]) -> None:
        with self.lock:
            self.runs.setdefault(str(run["id"]), {}).update(
                {k: v for k, v in run.items() if v is not None}
            )


@pytest.fixture
def langsmith() -> Iterator[_Server]:
    server = _Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


SCRIPT = """
import asyncio, sys
from langchain_core.tracers.langchain import wait_for_all_tracers
from rlm_graph import build_graph
from tests.fakes import FakeChatModel, code, depth, final, is_subcall, last_text, turn

def respond(messages):
    if is_subcall(messages):
        return "sub answer"
    if depth(messages) == 0:
        if turn(messages) == 0:
            return code("a = llm_query('plain question')\\nb = rlm_query('child task', 'abc')\\n"
                        "print(a, '|', b)", "delegate")
        return final("done")
    if turn(messages) == 0:
        return code("print(llm_query('from the child'))", "child")
    return final("c")

# Instances, not specs: the tags must not depend on resolve_model.
graph = build_graph(model=FakeChatModel(respond=respond), max_depth=1)
if sys.argv[1] == "async":
    out = asyncio.run(graph.ainvoke({"query": "q", "context": "xyz"}))
else:
    out = graph.invoke({"query": "q", "context": "xyz"})
wait_for_all_tracers()
print(out["answer"])
"""


def _trace(langsmith: _Server, mode: str) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH", "LANGCHAIN"))}
    env.update(
        PYTHONPATH=str(ROOT),
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT=f"http://127.0.0.1:{langsmith.server_address[1]}",
        LANGSMITH_API_KEY="lsv2-dummy-key",
        LANGSMITH_PROJECT="rlm-graph-test",
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    return dict(langsmith.runs)


def _ancestors(runs: dict[str, dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    chain = []
    while run.get("parent_run_id") and str(run["parent_run_id"]) in runs:
        run = runs[str(run["parent_run_id"])]
        chain.append(run)
    return chain


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_block_spans_with_sub_calls_nested_and_tagged(langsmith: _Server, mode: str) -> None:
    runs = _trace(langsmith, mode)
    blocks = [r for r in runs.values() if r.get("name") == "code block"]
    assert len(blocks) == 2, [r.get("name") for r in runs.values()]  # root's and child's block
    for block in blocks:
        assert block["run_type"] == "tool"
        assert "llm_query(" in block["inputs"]["code"]
        out = block["outputs"]["output"]
        assert out["error"] is None and out["output"].strip()
        assert _ancestors(runs, block)[0]["name"] == "execute"
    root_block = next(b for b in blocks if "rlm_query" in b["inputs"]["code"])
    assert root_block["outputs"]["output"]["output"].strip() == "sub answer | c"

    subs = [
        r
        for r in runs.values()
        if r.get("run_type") == "llm" and "rlm:sub" in (r.get("tags") or [])
    ]
    roots = [
        r
        for r in runs.values()
        if r.get("run_type") == "llm" and "rlm:root" in (r.get("tags") or [])
    ]
    assert len(subs) == 2 and len(roots) == 4, [
        (r.get("name"), r.get("tags")) for r in runs.values()
    ]
    for sub in subs:
        assert "rlm:root" not in sub["tags"]
        assert any(a.get("name") == "code block" for a in _ancestors(runs, sub))
    # The child run (rlm_query) and its model calls hang under the root's block.
    child_calls = [r for r in roots if root_block in _ancestors(runs, r)]
    assert len(child_calls) == 2
