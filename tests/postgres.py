"""A real PostgreSQL for tests: Debian's server binaries, a fresh cluster in a temp dir, owned
by the ``postgres`` user (initdb refuses root), listening on a free loopback port."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway cluster; yields its connection URL; stops and removes it after."""
    bindir = _bin_dir()
    if bindir is None:
        missing = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: missing there is a broken setup
        pytest.skip(missing)
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no postgres user to run the server as")
    root = tempfile.mkdtemp(prefix="rlm-pg-")
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = os.path.join(root, "data"), _free_port()
    try:
        subprocess.run(
            _as_postgres([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l",
                          os.path.join(root, "log"), "-w", "start"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
