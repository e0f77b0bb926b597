"""Per-run settings of the RLM graph: its LangGraph context schema.

The same fields are the keyword arguments of :func:`rlm_graph.build_graph`; values given there
become the defaults, and ``graph.invoke(..., context={...})`` overrides them for one run. LangGraph
Studio builds its settings form from this dataclass, so every field carries a description.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

SandboxMode = Literal["process", "strict"]
PromptStyle = Literal["auto", "full", "compact"]


@dataclass(kw_only=True)
class Context:
    """Settings for one RLM run; children inherit them (the depth comes from the run config)."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Root model spec such as 'groq/llama-3.3-70b-versatile', "
            "'ollama/qwen2.5-coder', 'openai/gpt-4o-mini', 'gemini/gemini-2.0-flash' or "
            "'package.module:attr'. Empty = the graph's default model."
        },
    )
    sub_model: str | None = field(
        default=None,
        metadata={
            "description": "Model spec used by llm_query() and by rlm_query() past max_depth. "
            "Empty = the graph's default sub-model (the root model if none was set)."
        },
    )
    max_depth: int = field(
        default=2,
        metadata={
            "description": "Deepest recursion level: rlm_query() from a run at this depth is "
            "answered by a plain sub-model call instead of a child RLM. 0 disables recursion."
        },
    )
    max_iterations: int = field(
        default=20,
        metadata={
            "description": "Model turns per run; when reached, one last call asks for the best "
            "answer from what is known."
        },
    )
    exec_timeout: float = field(
        default=60.0,
        metadata={"description": "Seconds one code block may run (waiting on sub-calls excluded)."},
    )
    max_output_chars: int | None = field(
        default=None,
        metadata={
            "description": "Characters of a block's output shown to the model (head+tail). "
            "Empty = 20,000, or 2,000 for a small root model (the local one: 8k-token window)."
        },
    )
    prompt_style: PromptStyle = field(
        default="auto",
        metadata={
            "description": "Root system prompt: 'full', or 'compact' (about 330 tokens with one "
            "worked example, for small models on a CPU). 'auto' = compact for a small root "
            "model (the local one, or any model tagged 'rlm:small-model'), full otherwise."
        },
    )
    sandbox: SandboxMode = field(
        default="process",
        metadata={
            "description": "'process': isolated worker subprocess; 'strict': additionally "
            "bubblewrap/landlock (no network, read-only filesystem)."
        },
    )
    max_concurrency: int = field(
        default=8,
        metadata={
            "description": "Sub-calls in flight at once per run for llm_query_batched() and "
            "rlm_query_batched()."
        },
    )
    max_llm_calls: int | None = field(
        default=None,
        metadata={
            "description": "Model calls allowed for the whole recursion tree (root, llm_query "
            "and every child). Empty = unlimited."
        },
    )
    max_total_tokens: int | None = field(
        default=None,
        metadata={
            "description": "Tokens (input+output) for the whole tree; no new call starts once "
            "reached. Empty = unlimited."
        },
    )
    max_seconds: float | None = field(
        default=None,
        metadata={
            "description": "Wall-clock deadline in seconds for the whole tree. Empty = none."
        },
    )


CONTEXT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Context))


def context_class_with_defaults(defaults: dict[str, Any]) -> type[Context]:
    """Return a ``Context`` subclass whose field defaults are ``defaults``.

    LangGraph builds the per-run context from the schema class, so a dict passed as
    ``context=`` gets the graph's own defaults for the fields it leaves out (and Studio's form
    shows them).
    """
    unknown = set(defaults) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    new_fields = [
        (f.name, f.type, field(default=defaults[f.name], metadata=f.metadata))
        for f in dataclasses.fields(Context)
        if f.name in defaults
    ]
    cls = dataclasses.make_dataclass("Context", new_fields, bases=(Context,), kw_only=True)
    cls.__module__ = __name__
    cls.__doc__ = Context.__doc__
    return cls


def resolve_context(value: Any, cls: type[Context]) -> Context:
    """Normalise ``runtime.context`` (None, a dict or a Context) to a ``cls`` instance."""
    if value is None:
        return cls()
    if isinstance(value, Context):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f"context must be a dict of settings or a Context, got {type(value).__name__}")


def validate_context(ctx: Context) -> None:
    """Raise ``ValueError`` with a clear message when a setting is out of range."""
    checks: list[tuple[bool, str]] = [
        (ctx.max_depth >= 0, "max_depth must be >= 0"),
        (ctx.max_iterations >= 1, "max_iterations must be >= 1"),
        (ctx.exec_timeout > 0, "exec_timeout must be > 0"),
        (
            ctx.max_output_chars is None or ctx.max_output_chars >= 100,
            "max_output_chars must be >= 100",
        ),
        (
            ctx.prompt_style in ("auto", "full", "compact"),
            "prompt_style must be 'auto', 'full' or 'compact'",
        ),
        (ctx.max_concurrency >= 1, "max_concurrency must be >= 1"),
        (ctx.sandbox in ("process", "strict"), "sandbox must be 'process' or 'strict'"),
        (ctx.max_llm_calls is None or ctx.max_llm_calls >= 1, "max_llm_calls must be >= 1"),
        (
            ctx.max_total_tokens is None or ctx.max_total_tokens >= 1,
            "max_total_tokens must be >= 1",
        ),
        (ctx.max_seconds is None or ctx.max_seconds > 0, "max_seconds must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"invalid setting: {message}")
