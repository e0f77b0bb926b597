"""Second confinement layer that a strict-mode worker applies to itself (stdlib only).

Imported by ``zygote.py`` inside the sandbox, right after fork and before the worker starts
any thread: ``import confine; confine.apply(scratch_dir)``. It never imports ``rlm_graph``.

Layers, each applied only where the kernel allows and reported either way:

- ``PR_SET_NO_NEW_PRIVS``: exec can never gain privileges (setuid bits, file capabilities).
- Landlock: reading and executing stay allowed everywhere, writing only beneath the scratch
  dir, ``/tmp``, ``/dev/shm`` and a few device files; TCP bind/connect are denied (ABI >= 4);
  signals and abstract unix sockets cannot reach processes outside the domain (ABI >= 6).
  Landlock restricts the calling thread and its future children only, hence "before threads".
- seccomp: a hand-assembled BPF filter that fails kernel-administration and namespace
  syscalls (``mount``, ``unshare``, ``setns``, ``ptrace``, ``bpf``, ``kexec_*``...) with
  ``EPERM``, refuses other syscall ABIs (x32, i386), and ``clone3`` with ``ENOSYS`` so that
  libc falls back to ``clone``, whose namespace flags the filter can see. Calls that act on
  another process without a ptrace check (which Landlock would apply) work on the caller only
  (pid 0): ``prlimit64`` may read any pid's limits but set only its own, ``setpriority``,
  ``ioprio_set`` and ``sched_set*`` take pid 0 only (so the worker cannot starve or kill the
  unconfined zygote). ``socket``/``socketpair`` accept only ``ALLOWED_SOCKET_FAMILIES``.

None of these can crash the worker: an unavailable layer is reported in the returned dict.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1

SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem access rights, by the ABI version that introduced them.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

FS_ABI1 = (1 << 13) - 1
FS_BY_ABI = {1: FS_ABI1, 2: FS_ABI1 | FS_REFER, 3: FS_ABI1 | FS_REFER | FS_TRUNCATE}
FS_ALL = FS_ABI1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV
FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# Rights that make sense on a single file (Landlock rejects directory rights on files).
FS_FILE = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

WRITABLE_DIRS = ("/tmp", "/dev/shm", "/dev/pts")
WRITABLE_DEVICES = (
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"
)  # fmt: skip

# seccomp BPF.
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16  # args[0], low 32 bits on little-endian machines
ARG_SIZE = 8
X32_SYSCALL_BIT = 0x40000000
CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

#: Socket families sandboxed code may create (``socket``/``socketpair``); others fail with
#: EAFNOSUPPORT. AF_VSOCK (40) shares its port space with the host, whatever the namespaces.
ALLOWED_SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1

# Names shared by both tables; numbers >= 424 are the same on every architecture.
_COMMON_DENIED = {
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "move_mount": 429, "open_tree": 428,
    "fspick": 433, "mount_setattr": 442, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427,
}  # fmt: skip

ARCHES: dict[str, dict[str, Any]] = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "x32_bit": True,
        "seccomp": 317,
        "clone": 56,
        "clone3": 435,
        # Allowed only on the caller itself (pid 0) or, for sockets, on the allowed families.
        "checked": {
            "socket": 41, "socketpair": 53, "prlimit64": 302, "setpriority": 141,
            "ioprio_set": 251, "sched_setattr": 314, "sched_setscheduler": 144,
            "sched_setparam": 142, "sched_setaffinity": 203,
        },
        "denied": {
            "ptrace": 101, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308,
            "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
            "perf_event_open": 298, "kexec_load": 246, "kexec_file_load": 320,
            "init_module": 175, "finit_module": 313, "delete_module": 176, "pivot_root": 155,
            "chroot": 161, "swapon": 167, "swapoff": 168, "reboot": 169,
            "process_vm_readv": 310, "process_vm_writev": 311, "userfaultfd": 323,
            "open_by_handle_at": 304, "name_to_handle_at": 303, "acct": 163,
            "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
            "quotactl": 179, "syslog": 103, "vhangup": 153, "lookup_dcookie": 212,
            "nfsservctl": 180, "iopl": 172, "ioperm": 173, "uselib": 134, "_sysctl": 156,
            **_COMMON_DENIED,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "x32_bit": False,
        "seccomp": 277,
        "clone": 220,
        "clone3": 435,
        "checked": {
            "socket": 198, "socketpair": 199, "prlimit64": 261, "setpriority": 140,
            "ioprio_set": 30, "sched_setattr": 274, "sched_setscheduler": 119,
            "sched_setparam": 118, "sched_setaffinity": 122,
        },
        "denied": {
            "ptrace": 117, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268,
            "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
            "perf_event_open": 241, "kexec_load": 104, "kexec_file_load": 294,
            "init_module": 105, "finit_module": 273, "delete_module": 106, "pivot_root": 41,
            "chroot": 51, "swapon": 224, "swapoff": 225, "reboot": 142,
            "process_vm_readv": 270, "process_vm_writev": 271, "userfaultfd": 282,
            "open_by_handle_at": 265, "name_to_handle_at": 264, "acct": 89,
            "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
            "quotactl": 60, "syslog": 116, "vhangup": 58, "lookup_dcookie": 18,
            "nfsservctl": 42,
            **_COMMON_DENIED,
        },
    },
}  # fmt: skip
ARCHES["arm64"] = ARCHES["aarch64"]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.c_void_p),
    ]


class _Libc:
    """``syscall``/``prctl`` with errno, so every failure can be reported by name."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.lib.syscall.restype = ctypes.c_long
        self.lib.prctl.restype = ctypes.c_int

    def syscall(self, number: int, *args: Any) -> int:
        ctypes.set_errno(0)
        cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        result = int(self.lib.syscall(ctypes.c_long(number), *cargs))
        if result < 0:
            raise _errno_error(ctypes.get_errno())
        return result

    def prctl(self, option: int, arg2: int, arg3: Any = 0) -> None:
        ctypes.set_errno(0)
        cargs = (ctypes.c_ulong(0), ctypes.c_ulong(0))
        if self.lib.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), arg3, *cargs) != 0:
            raise _errno_error(ctypes.get_errno())


def _errno_error(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode.get(code, code)}: {os.strerror(code)}")


def apply(scratch_dir: str) -> dict[str, Any]:
    """Confine the calling process; return which layers are active (JSON-serializable).

    Keys: ``no_new_privs`` (bool), ``landlock`` (bool), ``landlock_abi`` (int, 0 when
    unsupported), ``seccomp`` (bool), ``threads`` (threads alive when applied; Landlock covers
    only the calling one) and ``errors`` (layer name → reason, for every layer not active).
    """
    status: dict[str, Any] = {
        "no_new_privs": False,
        "landlock": False,
        "landlock_abi": 0,
        "seccomp": False,
        "threads": _thread_count(),
        "errors": {},
    }
    try:
        libc = _Libc()
    except (OSError, AttributeError) as exc:
        status["errors"]["libc"] = f"cannot load libc: {exc}"
        return status
    try:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1)
        status["no_new_privs"] = True
    except OSError as exc:
        status["errors"]["no_new_privs"] = str(exc)
    # Both layers below need no_new_privs (we have no CAP_SYS_ADMIN); each still reports why.
    try:
        status["landlock_abi"] = landlock_abi(libc)
        _apply_landlock(libc, status["landlock_abi"], scratch_dir)
        status["landlock"] = True
    except (OSError, ValueError) as exc:
        status["errors"]["landlock"] = str(exc)
    try:
        _apply_seccomp(libc)
        status["seccomp"] = True
    except (OSError, ValueError) as exc:
        status["errors"]["seccomp"] = str(exc)
    return status


PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SYS_PTRACE = 19
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_ptrace_capability() -> bool:
    """Drop ``CAP_SYS_PTRACE`` for good (process mode, when the worker runs as root).

    The host makes itself non-dumpable; root could still ptrace it with this capability. It is
    removed from the bounding set (so no exec can regain it) and from the effective, permitted
    and inheritable sets; ambient capabilities are cleared. Returns whether it is gone.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
            return False
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            return False
        word, bit = divmod(CAP_SYS_PTRACE, 32)
        mask = ~(1 << bit) & 0xFFFFFFFF
        data[word].effective &= mask
        data[word].permitted &= mask
        data[word].inheritable &= mask
        return int(libc.capset(ctypes.byref(header), data)) == 0
    except (OSError, AttributeError):
        return False


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def landlock_abi(libc: _Libc | None = None) -> int:
    """The kernel's Landlock ABI version; raises ``OSError`` when Landlock is unavailable."""
    libc = libc or _Libc()
    try:
        return libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            raise OSError(exc.errno, "kernel without Landlock support (ENOSYS)") from None
        if exc.errno == errno.EOPNOTSUPP:
            raise OSError(exc.errno, "Landlock is disabled at boot (EOPNOTSUPP)") from None
        raise


def _apply_landlock(libc: _Libc, abi: int, scratch_dir: str) -> None:
    fs = FS_BY_ABI.get(abi, FS_ALL) if abi < 5 else FS_ALL
    attr = _RulesetAttr(handled_access_fs=fs)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    ruleset = libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0
    )
    try:
        _add_rule(libc, ruleset, "/", FS_READ & fs)
        for path in (scratch_dir, *WRITABLE_DIRS):
            _add_rule(libc, ruleset, path, fs, missing_ok=path != scratch_dir)
        for path in WRITABLE_DEVICES:
            _add_rule(libc, ruleset, path, FS_FILE & fs, missing_ok=True)
        libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def _add_rule(libc: _Libc, ruleset: int, path: str, access: int, missing_ok: bool = False) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        if not os.path.isdir(path):
            access &= FS_FILE
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        libc.syscall(
            SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
        )
    finally:
        os.close(fd)


# (code, jt, jf, k): jumps are relative offsets or label names; a bare string defines a label.
Insn = tuple[int, "str | int", "str | int", int]

# Which check each argument-checked syscall jumps to.
_CHECK_OF = {
    "socket": "family", "socketpair": "family", "prlimit64": "prlimit",
    "setpriority": "prio", "ioprio_set": "ioprio", "sched_setattr": "self",
    "sched_setscheduler": "self", "sched_setparam": "self", "sched_setaffinity": "self",
}  # fmt: skip


def _arg(index: int, high: bool = False) -> int:
    """Offset of syscall argument ``index`` (its low or high 32 bits, little-endian)."""
    return OFFSET_ARG0_LOW + ARG_SIZE * index + (4 if high else 0)


def _argument_checks() -> list[Insn | str]:
    """The checks jumped to for the syscalls in ``checked``: each ends in allow or a denial."""
    family: list[Insn | str] = ["family", (BPF_LD_W_ABS, 0, 0, _arg(0))]
    for number in ALLOWED_SOCKET_FAMILIES.values():
        family.append((BPF_JEQ_K, "allow", 0, number))
    family.append((BPF_RET_K, 0, 0, RET_ERRNO | errno.EAFNOSUPPORT))
    return [
        "clone",
        (BPF_LD_W_ABS, 0, 0, _arg(0)),
        (BPF_JSET_K, "deny", "allow", CLONE_NAMESPACE_FLAGS),
        *family,
        # pid 0 is the caller; the kernel reads pid_t arguments as 32-bit ints.
        "self",
        (BPF_LD_W_ABS, 0, 0, _arg(0)),
        (BPF_JEQ_K, "allow", "deny", 0),
        # prlimit64(pid, resource, new, old): any pid may be read (new == NULL), only 0 set.
        "prlimit",
        (BPF_LD_W_ABS, 0, 0, _arg(0)),
        (BPF_JEQ_K, "allow", 0, 0),
        (BPF_LD_W_ABS, 0, 0, _arg(2)),
        (BPF_JEQ_K, 0, "deny", 0),
        (BPF_LD_W_ABS, 0, 0, _arg(2, high=True)),
        (BPF_JEQ_K, "allow", "deny", 0),
        # setpriority(which, who, prio) and ioprio_set(which, who, prio): this process only.
        "prio",
        (BPF_LD_W_ABS, 0, 0, _arg(0)),
        (BPF_JEQ_K, "who", "deny", PRIO_PROCESS),
        "ioprio",
        (BPF_LD_W_ABS, 0, 0, _arg(0)),
        (BPF_JEQ_K, "who", "deny", IOPRIO_WHO_PROCESS),
        "who",
        (BPF_LD_W_ABS, 0, 0, _arg(1)),
        (BPF_JEQ_K, "allow", "deny", 0),
    ]


def seccomp_program(machine: str | None = None) -> bytes:
    """The seccomp BPF program (packed ``struct sock_filter`` array) for ``machine``.

    Raises ``ValueError`` for an architecture without a syscall table here.
    """
    machine = machine or os.uname().machine
    arch = ARCHES.get(machine)
    if arch is None:
        raise ValueError(f"no seccomp syscall table for architecture {machine!r}")
    prog: list[Insn | str] = [
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        (BPF_JEQ_K, 0, "deny", arch["audit_arch"]),
        (BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    if arch["x32_bit"]:
        prog.append((BPF_JGE_K, "deny", 0, X32_SYSCALL_BIT))
    for number in sorted(set(arch["denied"].values())):
        prog.append((BPF_JEQ_K, "deny", 0, number))
    prog.append((BPF_JEQ_K, "enosys", 0, arch["clone3"]))
    prog.append((BPF_JEQ_K, "clone", 0, arch["clone"]))
    for name, number in arch["checked"].items():
        prog.append((BPF_JEQ_K, _CHECK_OF[name], 0, number))
    prog += [
        (BPF_RET_K, 0, 0, RET_ALLOW),
        *_argument_checks(),
        "allow",
        (BPF_RET_K, 0, 0, RET_ALLOW),
        "deny",
        (BPF_RET_K, 0, 0, RET_ERRNO | errno.EPERM),
        "enosys",
        (BPF_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
    ]
    return _assemble(prog)


def _assemble(prog: list[Insn | str]) -> bytes:
    """Resolve labels to relative jump offsets and pack the instructions."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for index, (code, jt, jf, k) in enumerate(insns):
        offsets = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= off <= 255 for off in offsets):
            raise ValueError("seccomp program too long for 8-bit jump offsets")
        out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)


def _apply_seccomp(libc: _Libc) -> None:
    program = seccomp_program()
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len=len(program) // 8, filter=ctypes.cast(buf, ctypes.c_void_p))
    arch = ARCHES[os.uname().machine]
    try:
        # TSYNC puts every thread of the process under the filter, not only the caller.
        failed_tid = libc.syscall(
            arch["seccomp"], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog)
        )
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog))
        return
    if failed_tid:
        # Nothing was installed: another thread already runs under an incompatible filter.
        raise OSError(errno.EBUSY, f"thread {failed_tid} could not be synchronised (TSYNC)")
