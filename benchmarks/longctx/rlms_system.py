"""The ``rlms`` system: the reference RLM pointed at the same OpenAI-compatible server.

The endpoint and decoding (temperature, output cap, stop sequences, ``extra_body``) are read
from the LangChain model the spec resolves to, so both RLMs talk to the same server with the
same sampling. For a small model (tagged ``rlm:small-model``, as ``local`` is) rlms is
configured for its 8k-token window: the orchestrator addendum is left out (about 700 tokens,
and it asks for ~100K-character sub-prompts) and the prompt states the real sub-call window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from benchmarks.longctx.systems import (
    CHARS_PER_TOKEN,
    Outcome,
    Settings,
    System,
    error_text,
)
from benchmarks.longctx.tasks import Task

CHILD = Path(__file__).with_name("rlms_child.py")
GRACE_SECONDS = 60.0
SMALL_MODEL_TAG = "rlm:small-model"


class RlmsUnavailableError(RuntimeError):
    """rlms cannot be pointed at this model."""


def _secret(value: Any) -> str:
    if value is None:
        return "none"
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def openai_endpoint(chat: BaseChatModel) -> dict[str, Any]:
    """rlms ``backend_kwargs`` (base URL, key, model name, sampling) for ``chat``."""
    from langchain_openai import ChatOpenAI

    name = type(chat).__name__
    if isinstance(chat, ChatOpenAI):
        from rlm_graph.models import ChatLocalLlama

        if isinstance(chat, ChatLocalLlama):
            # The server starts on the first call; its address is known only then.
            chat.invoke("Reply OK.", max_completion_tokens=1)
        sampling = {
            "temperature": chat.temperature,
            "max_tokens": chat.max_tokens,
            "stop": chat.stop,
            "extra_body": chat.extra_body,
        }
        base = chat.openai_api_base or "https://api.openai.com/v1"
        key, model_name = _secret(chat.openai_api_key), chat.model_name
    elif name == "ChatGroq":
        base = os.environ.get("GROQ_API_BASE", "").strip() or "https://api.groq.com"
        base = base.rstrip("/") + "/openai/v1"
        key, model_name = (
            _secret(getattr(chat, "groq_api_key", None)),
            str(getattr(chat, "model_name", "")),
        )
        sampling = {"temperature": getattr(chat, "temperature", None)}
    elif name == "ChatOllama":
        base = str(getattr(chat, "base_url", "") or "http://127.0.0.1:11434").rstrip("/") + "/v1"
        key, model_name = "ollama", str(getattr(chat, "model", ""))
        sampling = {"temperature": getattr(chat, "temperature", None)}
    else:
        raise RlmsUnavailableError(
            f"rlms needs an OpenAI-compatible server, and a {name} model has none; use a "
            "groq/, openai/, gemini/, ollama/ or local spec"
        )
    return {
        "base_url": base,
        "api_key": key,
        "model_name": model_name,
        "sampling_args": {k: v for k, v in sampling.items() if v is not None},
    }


def rlms_request(task: Task, backend: dict[str, Any], small: bool, settings: Settings) -> dict:
    """The child's request: task, backend and rlms settings."""
    window = int(CHARS_PER_TOKEN * settings.window_tokens) if small else None
    return {
        "query": task.query,
        "context": task.context,
        "backend_kwargs": backend,
        # rlms counts the root as depth 0 and answers plainly at depth >= max_depth; the graph
        # answers plainly past max_depth. The same recursion needs one more in rlms.
        "max_depth": settings.max_depth + 1,
        "max_iterations": settings.max_iterations,
        "max_seconds": settings.max_seconds,
        "sub_window_chars": window,
        "orchestrator": not small,
        "keep_messages": settings.keep_messages,
    }


def rlms_system(model: str | BaseChatModel, settings: Settings) -> System:
    """Each task in a fresh ``rlms_child.py`` process, killed at its deadline plus a grace."""
    from rlm_graph.models import resolve_model

    chat = resolve_model(model)
    small = SMALL_MODEL_TAG in (chat.tags or [])
    backend: dict[str, Any] | None = None
    setup_error: str | None = None

    def run(task: Task) -> Outcome:
        nonlocal backend, setup_error
        start = time.perf_counter()
        if backend is None and setup_error is None:
            try:
                backend = openai_endpoint(chat)
            except Exception as exc:
                setup_error = error_text(exc)
        if backend is None:
            return Outcome(None, time.perf_counter() - start, error=setup_error)
        result = run_child(rlms_request(task, backend, small, settings), settings)
        return Outcome(
            answer=result.get("answer"),
            seconds=time.perf_counter() - start,
            calls=int(result.get("calls") or 0),
            input_tokens=int(result.get("input_tokens") or 0),
            output_tokens=int(result.get("output_tokens") or 0),
            error=result.get("error"),
            extra={"orchestrator": not small, **_trace(result)},
        )

    return run


def _trace(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("iterations", "messages", "usage_incomplete") if k in result}


def run_child(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Run ``rlms_child.py`` on ``request``; a crash or overrun becomes an error result."""
    limit = (settings.max_seconds or 3600.0) + GRACE_SECONDS
    with tempfile.TemporaryDirectory(prefix="longctx-rlms-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        try:
            proc = subprocess.run(
                [sys.executable, str(CHILD), str(req), str(res)],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"rlms did not finish within {limit:.0f} s; killed"}
        if not res.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            return {"error": f"rlms exited with code {proc.returncode}: {tail[0][:300]}"}
        loaded: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
        return loaded
