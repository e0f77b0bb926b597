"""The isolated REPL where model-written code runs (stdlib only; knows nothing of LangChain).

See :class:`Sandbox` and ``docs/ARCHITECTURE.md`` (Sandbox API).
"""

from __future__ import annotations

from .errors import PayloadError, SandboxError
from .result import ExecResult
from .sandbox import Mode, Sandbox

__all__ = ["ExecResult", "Mode", "PayloadError", "Sandbox", "SandboxError"]
