"""Local server lifecycle pieces that need no real model: settings and start-up failure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlm_graph.local.server import LocalServer, LocalServerError, LocalSettings


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LOCAL_CTX", "4096")
    monkeypatch.setenv("RLM_LOCAL_THREADS", "3")
    monkeypatch.setenv("RLM_LOCAL_MAX_TOKENS", "256")
    s = LocalSettings.from_env()
    assert (s.ctx, s.threads, s.max_tokens) == (4096, 3, 256)
    monkeypatch.setenv("RLM_LOCAL_CTX", "big")
    with pytest.raises(LocalServerError, match="RLM_LOCAL_CTX"):
        LocalSettings.from_env()
    monkeypatch.setenv("RLM_LOCAL_CTX", "0")
    with pytest.raises(LocalServerError, match="positive"):
        LocalSettings.from_env()
    monkeypatch.delenv("RLM_LOCAL_CTX")
    assert LocalSettings.from_env().cache_prompt is True
    monkeypatch.setenv("RLM_LOCAL_CACHE_PROMPT", "0")
    assert LocalSettings.from_env().cache_prompt is False
    monkeypatch.setenv("RLM_LOCAL_CACHE_PROMPT", "maybe")
    with pytest.raises(LocalServerError, match="RLM_LOCAL_CACHE_PROMPT must be 1 or 0"):
        LocalSettings.from_env()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match="not found"):
        LocalServer(tmp_path / "absent.gguf").ensure_started()


@pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None,
    reason="the local extra is not installed (uv sync --extra local)",
)
def test_bad_gguf_reports_log_tail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    server = LocalServer(bad, LocalSettings(start_timeout=120))
    with pytest.raises(LocalServerError) as info:
        server.ensure_started()
    message = str(info.value)
    assert "before it was ready" in message
    assert "server.log" in message
    assert "bad.gguf" in message  # llama.cpp's own log lines name the file it failed on
    assert not server.running()
