"""Model calls over real loopback HTTP: a hung provider, rate limits, server errors, a server
that is not there. Each run must end with its best answer and the error, not hang or raise."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlm_graph import build_graph
from rlm_graph.retry import CallPolicy, is_retryable, retry_after

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "rlm-graph")

# A reply is (status, headers, text) or "hang".
Script = Callable[[int, dict[str, Any]], Any]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        with self.server.lock:
            n = len(self.server.times)
            self.server.times.append(time.monotonic())
        reply = self.server.script(n, body)
        if reply == "hang":
            # Like a provider that accepted the request and never answers (1,000 s).
            self.server.stop.wait(1000)
            return
        status, headers, text = reply
        if status != 200:
            payload = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
        elif self.path == "/api/chat":
            payload = json.dumps(
                {"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": text}, "done": True,
                 "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
            ).encode()  # fmt: skip
        else:
            payload = json.dumps(
                {"id": "c", "object": "chat.completion", "created": 1, "model": "x",
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
            ).encode()  # fmt: skip
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Script], _Server]]:
    servers: list[_Server] = []
    for var in ("RLM_LLM_TIMEOUT", "OLLAMA_HOST", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")

    def start(script: Script) -> _Server:
        server = _Server(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        return server

    yield start
    for server in servers:
        server.stop.set()
        server.shutdown()
        server.server_close()


CODE = "Thought: look\n```python\nprint(6 * 7)\n```"


def test_max_seconds_stops_a_hung_call_in_flight(serve: Callable[[Script], _Server]) -> None:
    server = serve(lambda n, body: "hang")
    began = time.monotonic()
    out = build_graph("openai/x", max_seconds=5).invoke({"query": "q"})
    took = time.monotonic() - began
    assert took < 12, took
    assert len(server.times) == 1
    assert out["stopped_reason"] == "budget"
    assert "max_seconds" in out["error"] and server.url in out["error"], out["error"]
    assert "max_seconds" in out["answer"]  # no answer known: the answer says why


def test_max_seconds_cancels_an_async_call(serve: Callable[[Script], _Server]) -> None:
    serve(lambda n, body: "hang")
    began = time.monotonic()
    out = asyncio.run(build_graph("openai/x", max_seconds=3).ainvoke({"query": "q"}))
    assert time.monotonic() - began < 10
    assert out["stopped_reason"] == "budget" and "max_seconds" in out["error"]


def test_llm_timeout_bounds_each_attempt(serve: Callable[[Script], _Server]) -> None:
    # First turn answers with code; every later call hangs: the run keeps its best answer.
    server = serve(lambda n, body: (200, {}, CODE) if n == 0 else "hang")
    began = time.monotonic()
    graph = build_graph("openai/x", llm_timeout=1.5, llm_retry_seconds=0)
    out = graph.invoke({"query": "q"})
    assert time.monotonic() - began < 10
    assert len(server.times) == 2
    assert out["stopped_reason"] == "error"
    assert out["answer"] == "42"
    assert "no reply within 1.5 s" in out["error"] and server.url in out["error"]


def test_rate_limit_retried_after_retry_after(serve: Callable[[Script], _Server]) -> None:
    def script(n: int, body: dict[str, Any]) -> Any:
        if n < 2:
            return 429, {"retry-after": "1"}, ""
        return 200, {}, "Thought: known\nFinal Answer: 7"

    server = serve(script)
    out = build_graph("openai/x").invoke({"query": "q"})
    assert out["answer"] == "7" and out["stopped_reason"] == "final_answer"
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.95 for g in gaps), gaps  # retry-after honoured


def test_server_errors_end_the_run_with_best_answer_and_error(
    serve: Callable[[Script], _Server],
) -> None:
    server = serve(lambda n, body: (200, {}, CODE) if n == 0 else (503, {}, ""))
    began = time.monotonic()
    out = build_graph("openai/x", llm_retry_seconds=2).invoke({"query": "q"})
    assert time.monotonic() - began < 15
    assert out["stopped_reason"] == "error" and out["answer"] == "42"
    assert len(server.times) >= 3  # retried with backoff until llm_retry_seconds ran out
    assert "503" in out["error"] and server.url in out["error"], out["error"]


def test_bad_request_is_not_retried(serve: Callable[[Script], _Server]) -> None:
    server = serve(lambda n, body: (400, {}, ""))
    out = build_graph("openai/x").invoke({"query": "q"})
    assert len(server.times) == 1
    assert out["stopped_reason"] == "error" and "400" in out["error"]


def test_ollama_retries_and_its_connection_error_names_the_host(
    serve: Callable[[Script], _Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    def script(n: int, body: dict[str, Any]) -> Any:
        return (429, {}, "") if n == 0 else (200, {}, "Thought: t\nFinal Answer: 5")

    server = serve(script)
    out = build_graph("ollama/m").invoke({"query": "q"})
    assert out["answer"] == "5" and len(server.times) == 2

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    out = build_graph("ollama/m", llm_retry_seconds=0).invoke({"query": "q"})
    assert out["stopped_reason"] == "error"
    assert f"http://127.0.0.1:{port}" in out["error"], out["error"]


def test_cli_json_on_a_failed_call(serve: Callable[[Script], _Server]) -> None:
    server = serve(lambda n, body: (200, {}, CODE) if n == 0 else (500, {}, ""))
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("RLM_MODEL", "GROQ_API_KEY")}
    env.update(PYTHONPATH=str(ROOT), OPENAI_BASE_URL=server.url + "/v1", OPENAI_API_KEY="k")
    proc = subprocess.run(
        [SCRIPT, "q", "--model", "openai/x", "--json", "--llm-retry-seconds", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["stopped_reason"] == "error" and out["answer"] == "42"
    assert "500" in out["error"]
    assert "error:" in proc.stderr and "500" in proc.stderr


# ---- the policy on its own ---------------------------------------------------------------------


def _status_error(status: int, headers: dict[str, str]) -> Exception:
    import openai

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    return openai.APIStatusError("x", response=response, body=None)


def test_retry_after_forms() -> None:
    assert retry_after(_status_error(429, {"retry-after": "3"})) == 3.0
    assert retry_after(_status_error(429, {"retry-after-ms": "1500"})) == 1.5
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past: no wait
    assert retry_after(_status_error(429, {"retry-after": date})) == 0.0
    assert retry_after(_status_error(429, {})) is None
    assert retry_after(ValueError()) is None


def test_what_is_retried() -> None:
    for status in (408, 409, 429, 500, 502, 503):
        assert is_retryable(_status_error(status, {}))
    for status in (400, 401, 403, 404, 422):
        assert not is_retryable(_status_error(status, {}))
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(ConnectionError("Failed to connect to Ollama"))
    assert not is_retryable(ValueError("bad"))


def test_backoff_grows_and_respects_the_retry_window() -> None:
    now = [100.0]
    policy = CallPolicy(retry_seconds=10, clock=lambda: now[0])
    exc = _status_error(503, {})
    delays = [policy.next_delay(a, exc, 100.0) for a in range(4)]
    assert all(d is not None and 0 <= d <= 2**a for a, d in enumerate(delays))
    assert policy.next_delay(0, _status_error(429, {"retry-after": "20"}), 100.0) is None
    now[0] = 111.0  # past the window
    assert policy.next_delay(0, exc, 100.0) is None
    assert CallPolicy(retry_seconds=0).next_delay(0, exc, 0.0) is None
