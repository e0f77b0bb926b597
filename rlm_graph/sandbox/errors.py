"""Exceptions raised by the sandbox."""

from __future__ import annotations


class SandboxError(RuntimeError):
    """The sandbox could not be set up or used (e.g. strict mode unavailable, sandbox closed)."""


class PayloadError(TypeError):
    """The payload is not one of the accepted types."""
