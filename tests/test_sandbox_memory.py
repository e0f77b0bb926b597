"""Issue 11 item 6: memory outside RLIMIT_AS (a memfd, /dev/shm) is counted where a memory
cgroup can be made, and the worker, not the host, pays when the limit is reached."""

from __future__ import annotations

import os

import pytest

from rlm_graph.sandbox import Sandbox, cgroup

GROW_MEMFD = """
import os
fd = os.memfd_create("bomb")
chunk = b"x" * (1 << 20)
written = 0
try:
    for _ in range(1024):  # 1 GiB, far over the 128 MiB limit; RLIMIT_AS does not see it
        os.write(fd, chunk)
        written += 1
except OSError as exc:
    print("refused after", written, "MiB:", exc)
print("wrote", written, "MiB")
"""


@pytest.mark.parametrize(
    "mode", ["process", pytest.param("strict", marks=pytest.mark.strict_sandbox)]
)
def test_memfd_beyond_the_memory_limit_is_stopped(mode: str) -> None:
    if not os.access(getattr(cgroup, "MEMORY_ROOT", "/sys/fs/cgroup/memory"), os.W_OK):
        pytest.skip("no writable memory cgroup here (the limit then rests on RLIMIT_AS only)")
    with Sandbox("x", mode=mode, memory_limit_mb=128, exec_timeout=60) as sb:  # type: ignore[arg-type]
        res = sb.run(GROW_MEMFD)
        assert "wrote 1024 MiB" not in res.output, res.output
        assert res.restarted, (res.output, res.error)
        assert "memory limit" in (res.error or ""), res.error
        assert sb.run("print('fine')").output == "fine\n"
