"""The main command starts the local model up front, with progress while weights are joined."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rlm_graph import cli, launch
from rlm_graph.local.weights import Part, ensure_weights


def test_main_command_prepares_a_local_model_before_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlm_graph.local import missing_local_packages

    if missing_local_packages():
        pytest.skip("the local extra is not installed")
    calls: list[str] = []

    def prepare(spec: str, say: object, on_progress: object = None) -> None:
        calls.append(spec)
        raise launch.SetupError("prepared first")

    monkeypatch.setattr(launch, "prepare_local", prepare)
    assert cli.main(["q", "--model", "local", "--quiet"]) == 2
    assert calls == ["local"]
    assert "prepared first" in capsys.readouterr().err


def test_local_specs() -> None:
    assert launch.local_specs("local", None) == ["local"]
    assert launch.local_specs("groq/x", "local/m.gguf") == ["local/m.gguf"]
    assert launch.local_specs("local", "local") == ["local"]
    assert launch.local_specs("openai/x", None) == []


def test_plain_status_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with launch.startup_status(quiet=False) as (say, _on_progress):
        say("Starting the llama.cpp server on 127.0.0.1...")
    assert capsys.readouterr().err == "Starting the llama.cpp server on 127.0.0.1...\n"
    with launch.startup_status(quiet=True) as (say, _on_progress):
        say("nothing")
    assert capsys.readouterr().err == ""


def test_weights_report_join_and_verify_progress(tmp_path: Path) -> None:
    parts, digest, total = [], hashlib.sha256(), 0
    for i in range(3):
        data = bytes((i * 7 + j) % 251 for j in range(3000 + i))
        path = tmp_path / f"part{i}.bin"
        path.write_bytes(data)
        digest.update(data)
        total += len(data)
        parts.append(Part(f"pkg{i}", path, None))
    dest = tmp_path / "cache" / "model.gguf"
    seen: list[tuple[str, int, int]] = []
    ensure_weights(
        parts, dest, sha256=digest.hexdigest(), size=total, on_progress=lambda *a: seen.append(a)
    )
    assert seen and {w for w, _, _ in seen} == {"joining"}
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    assert seen[-1] == ("joining", total, total)
    # Without its marker the file is verified by a full hash, with progress too.
    dest.with_name(dest.name + ".verified.json").unlink()
    seen.clear()
    ensure_weights(
        parts, dest, sha256=digest.hexdigest(), size=total, on_progress=lambda *a: seen.append(a)
    )
    assert seen[-1] == ("verifying", total, total)
