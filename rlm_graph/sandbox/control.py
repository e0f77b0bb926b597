"""The host's request/reply client for the sandbox's helper processes (template and zygote).

Both answer JSON requests, some carrying fds, over a ``SOCK_SEQPACKET`` socket, so one message is
one datagram. Also home to what the host needs to start them: the path of the child entry script.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import SandboxError

#: Where the modules that run inside the sandbox's processes live (see :mod:`.child`).
CHILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child")
#: The script the host runs (by path, under ``python -I -S``) to start a zygote or the template.
ENTRY_SCRIPT = os.path.join(CHILD_DIR, "entry.py")
REPLY_MAX = 1 << 16


class ZygoteDied(SandboxError):
    """The zygote (or the template) exited or stopped answering."""


class ControlClient:
    """Sends one request at a time on ``sock`` and waits for its reply.

    ``exited()`` says whether the peer process is gone (checked while waiting);
    ``describe_death()`` gives the text of the :class:`ZygoteDied` raised then.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        name: str,
        exited: Callable[[], bool],
        describe_death: Callable[[], str],
    ) -> None:
        self.sock = sock
        self.name = name
        self.exited = exited
        self.describe_death = describe_death
        self.lock = threading.Lock()

    def request(self, msg: dict[str, Any], fds: tuple[int, ...] = (), timeout: float = 30.0) -> Any:
        """Send ``msg`` (with ``fds``), return the reply; a refusal raises :class:`SandboxError`."""
        with self.lock:
            data = json.dumps(msg).encode()
            try:
                if fds:
                    socket.send_fds(self.sock, [data], list(fds))
                else:
                    self.sock.send(data)
            except OSError as exc:
                raise ZygoteDied(f"the {self.name} process is gone ({exc})") from None
            reply = self.receive(timeout, what=str(msg.get("op")))
        if not reply.get("ok"):
            raise SandboxError(f"the {self.name} refused {msg.get('op')!r}: {reply.get('error')}")
        return reply

    def receive(self, timeout: float, what: str) -> dict[str, Any]:
        """Wait for one message; raises :class:`ZygoteDied` if the peer exits or stays silent."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteDied(f"the {self.name} did not answer within {timeout:.0f} s ({what})")
            ready, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if ready:
                break
            if self.exited():
                raise ZygoteDied(self.describe_death())
        try:
            data = self.sock.recv(REPLY_MAX)
        except OSError:
            data = b""
        if not data:
            raise ZygoteDied(self.describe_death())
        try:
            reply = json.loads(data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise ZygoteDied(f"the {self.name} sent a malformed reply to {what!r}")
        return reply

    def tell(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` without waiting for (or taking the lock for) a reply; never blocks."""
        try:
            self.sock.send(json.dumps(msg).encode(), socket.MSG_DONTWAIT)
        except OSError:
            pass
