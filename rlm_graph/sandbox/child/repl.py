"""Worker side of the sandbox: runs model code blocks and forwards callbacks (stdlib only).

This module is imported by ``zygote.py`` inside the sandboxed process. It must never import
``rlm_graph`` (whose package ``__init__`` may pull in LangGraph) or anything outside the stdlib.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import linecache
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import frames
from tables import CALLBACK_NAMES


class FinalAnswer(BaseException):
    """Raised by ``final_answer``; a BaseException so ``except Exception`` cannot swallow it."""


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: dict[str, Any] | None = None


class Worker:
    """One persistent REPL bound to a protocol socket."""

    def __init__(self, sock: socket.socket, max_frame_bytes: int) -> None:
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self.pid = os.getpid()
        self.send_lock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.pending_lock = threading.Lock()
        self.ids = itertools.count(1)
        self.blocks: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.final: str | None = None
        self.in_block = False
        self.block_no = 0
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}

    # -- channel ---------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        data = frames.encode(message)
        with self.send_lock:
            self.sock.sendall(data)

    def reader(self) -> None:
        try:
            while True:
                msg = frames.read_frame(self.sock, 1 << 62)
                if msg is None:
                    break
                if msg.get("op") == "reply":
                    with self.pending_lock:
                        slot = self.pending.pop(msg.get("id"), None)
                    if slot is not None:
                        slot.reply = msg
                        slot.event.set()
                else:
                    self.blocks.put(msg)
        except BaseException:  # any failure of the channel ends the worker
            pass
        # The host is gone or the model closed our socket: nothing useful can happen any more.
        os._exit(0)

    # -- callbacks ---------------------------------------------------------------------------
    def call(self, name: str, args: list[Any]) -> Any:
        if os.getpid() != self.pid:
            raise RuntimeError(f"{name} is only available in the sandbox's main worker process")
        call_id = next(self.ids)
        try:
            data = frames.encode({"op": "call", "id": call_id, "name": name, "args": args})
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: arguments must be JSON-like ({exc})") from None
        if len(data) - 4 > self.max_frame_bytes:
            raise ValueError(
                f"{name}: arguments take {len(data) - 4} bytes, over the limit of "
                f"{self.max_frame_bytes} bytes; pass a smaller slice"
            )
        slot = _Pending()
        with self.pending_lock:
            self.pending[call_id] = slot
        with self.send_lock:
            self.sock.sendall(data)
        slot.event.wait()
        reply = slot.reply or {}
        if reply.get("ok"):
            return reply.get("value")
        raise RuntimeError(str(reply.get("error", f"{name} failed")))

    def install_api(self, context: Any, query: str, available: list[str]) -> None:
        ns = self.namespace
        ns["context"] = context
        ns["query"] = query

        def make(name: str) -> Any:
            if name not in available:
                base = name.removesuffix("_batched")

                def missing(*_args: Any, **_kwargs: Any) -> Any:
                    raise RuntimeError(f"{base} is not available in this sandbox")

                missing.__name__ = name
                return missing
            return None

        def llm_query(prompt: str) -> str:
            """Ask the sub-model one question; returns its answer text."""
            return self.call("llm_query", [str(prompt)])

        def llm_query_batched(prompts: list[str]) -> list[str]:
            """Ask many questions concurrently; answers in input order, "Error: ..." on failure."""
            return self.call("llm_query_batched", [[str(p) for p in prompts]])

        def rlm_query(query: str, context: Any = None) -> str:
            """Run a child RLM on (query, context); returns its final answer."""
            return self.call("rlm_query", [str(query), context])

        def rlm_query_batched(items: list[Any]) -> list[str]:
            """Run child RLMs concurrently; items are queries or (query, context) pairs."""
            norm: list[list[Any]] = []
            for item in items:
                if isinstance(item, (tuple, list)) and len(item) == 2:
                    norm.append([str(item[0]), item[1]])
                else:
                    norm.append([str(item), None])
            return self.call("rlm_query_batched", [norm])

        def final_answer(value: Any) -> None:
            """Submit the final answer and stop this block."""
            self.final = str(value)
            raise FinalAnswer(self.final)

        funcs = {
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
        }
        for name in CALLBACK_NAMES:
            ns[name] = make(name) or funcs[name]
        ns["final_answer"] = final_answer
        ns["FinalAnswer"] = FinalAnswer
        # The interpreter runs without ``site`` (faster start), which is what defines these.
        for name in ("exit", "quit"):
            if not hasattr(builtins, name):
                setattr(builtins, name, sys.exit)

    # -- execution ---------------------------------------------------------------------------
    def run_block(self, code: str) -> str | None:
        """Execute one block; returns the error text or None."""
        self.block_no += 1
        filename = f"<block {self.block_no}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        self.in_block = True
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            tail = tree.body[-1] if tree.body else None
            if isinstance(tail, ast.Expr):
                tree.body.pop()
                last = ast.Expression(tail.value)
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), self.namespace)
                if value is not None:
                    print(repr(value))
        except FinalAnswer:
            return None
        except BaseException as exc:  # model code may raise anything
            self.in_block = False
            return _format_error(exc)
        finally:
            self.in_block = False
        return None

    def _on_interrupt(self, _signum: int, _frame: Any) -> None:
        # Only model code is interrupted; an interrupt arriving while a result is being sent
        # would tear the frame, and processes forked by model code are not ours to interrupt.
        if self.in_block and os.getpid() == self.pid:
            raise KeyboardInterrupt

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_interrupt)
        threading.excepthook = _thread_excepthook
        threading.Thread(target=self.reader, name="rlm-reader", daemon=True).start()
        self.send({"op": "ready", "pid": self.pid})
        while True:
            try:
                msg = self.blocks.get()
                if msg is None or msg.get("op") != "exec":
                    continue
                self.final = None
                error = self.run_block(str(msg.get("code", "")))
            except KeyboardInterrupt:
                # An interrupt that arrived between blocks: the host already gave up on that block.
                continue
            if os.getpid() != self.pid:
                # A process forked by model code reached the end of the block: it must never
                # talk on the protocol channel.
                os._exit(0)
            try:
                _flush_std()
                self.send({"op": "done", "error": error, "final_answer": self.final})
            except OSError:
                os._exit(70)


_default_excepthook = threading.excepthook


def _thread_excepthook(args: Any) -> None:
    # final_answer() called from a model thread: recorded already, no traceback wanted.
    if args.exc_type is not None and issubclass(args.exc_type, FinalAnswer):
        return
    _default_excepthook(args)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # model code may have replaced or closed the stream
            pass


def _format_error(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    tb = exc.__traceback__
    # Drop the worker's own frames so the traceback starts at the model's code.
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<block"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
