"""Per-run settings of the RLM graph: its LangGraph context schema, and the one place each
setting is declared.

Every field carries its description (LangGraph Studio builds its form from them) and its check.
:func:`rlm_graph.build_graph` takes the same names as keyword arguments and makes them the
defaults; ``graph.invoke(..., context={...})`` overrides them for one run; the CLI derives one
flag per field (:func:`setting_fields`). An out-of-range value raises :class:`SettingError` (a
``ValueError``) when the
settings are built, before any model call.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

SandboxMode = Literal["process", "strict"]
PromptStyle = Literal["auto", "full", "compact"]
ApproveMode = Literal["code", "subcalls"]
Strategy = Literal["auto", "rlm", "direct"]

Check = tuple[Callable[[Any], bool], str]


def setting(default: Any, description: str, check: Check | None = None) -> Any:
    """A Context field: its default, its description (Studio, CLI help) and its range check."""
    return dataclasses.field(default=default, metadata={"description": description, "check": check})


class SettingError(ValueError):
    """A setting is out of range; ``setting`` names it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting: {setting} {problem}")
        self.setting, self.problem = setting, problem


def _at_least(low: float, *, strict: bool = False, optional: bool = False) -> Check:
    sign = ">" if strict else ">="

    def ok(value: Any) -> bool:
        if value is None:
            return optional
        return bool(value > low if strict else value >= low)

    return ok, f"must be {sign} {low:g}"


def _one_of(*choices: str) -> Check:
    quoted = [f"'{c}'" for c in choices]
    return (lambda v: v in choices), "must be " + ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


@dataclass(kw_only=True)
class Context:
    """Settings for one RLM run; children inherit them (the depth comes from the run config)."""

    model: str | None = setting(
        None,
        "Root model spec such as 'groq/llama-3.3-70b-versatile', 'ollama/qwen2.5-coder', "
        "'openai/gpt-4o-mini', 'gemini/gemini-2.0-flash' or 'package.module:attr'. "
        "Empty = the graph's default model.",
    )
    sub_model: str | None = setting(
        None,
        "Model spec used by llm_query() and by rlm_query() past max_depth. "
        "Empty = the graph's default sub-model (the root model if none was set).",
    )
    max_depth: int = setting(
        2,
        "Deepest recursion level: rlm_query() from a run at this depth is answered by a plain "
        "sub-model call instead of a child RLM. 0 disables recursion.",
        _at_least(0),
    )
    max_iterations: int = setting(
        20,
        "Model turns per run; when reached, one last call asks for the best answer from what "
        "is known.",
        _at_least(1),
    )
    dead_end_retries: int | None = setting(
        None,
        "Times per run a dead end (a reply whose search found nothing, or with neither code "
        "nor an answer) is asked again without that reply in view, sampled at a low "
        "temperature: a small model shown such a reply sends it again. Empty = 1 for small "
        "models (the compact prompt), 0 for others.",
        _at_least(0, optional=True),
    )
    exec_timeout: float = setting(
        60.0,
        "Seconds one code block may run (waiting on sub-calls excluded).",
        _at_least(0, strict=True),
    )
    max_output_chars: int | None = setting(
        None,
        "Characters of a block's output shown to the model (head+tail). Empty = 20,000, or "
        "2,000 for a small root model (the local one: 8k-token window).",
        _at_least(100, optional=True),
    )
    prompt_style: PromptStyle = setting(
        "auto",
        "Root system prompt: 'full', or 'compact' (about 330 tokens with one worked example, "
        "for small models on a CPU). 'auto' = compact for a small root model (the local one, "
        "or any model tagged 'rlm:small-model'), full otherwise.",
        _one_of("auto", "full", "compact"),
    )
    strategy: Strategy = setting(
        "auto",
        "'rlm': the REPL loop; 'direct': one call with the whole payload in the prompt; "
        "'auto': direct when the payload fits the root model's window with room to spare "
        "(a third of it), the loop otherwise (and always when the window is unknown).",
        _one_of("auto", "rlm", "direct"),
    )
    window_tokens: int | None = setting(
        None,
        "Context window of the root model in tokens, for the direct strategy, for what the "
        "prompt says llm_query can read and for history compaction (past 75% of it, older "
        "iterations are replaced by a summary). Empty = from the model's profile (the local "
        "model reports its server's RLM_LOCAL_CTX), else unknown (no compaction).",
        _at_least(256, optional=True),
    )
    sandbox: SandboxMode = setting(
        "process",
        "'process': isolated worker subprocess; 'strict': additionally bubblewrap/landlock "
        "(no network, read-only filesystem).",
        _one_of("process", "strict"),
    )
    max_concurrency: int = setting(
        8,
        "Sub-calls in flight at once per run for llm_query_batched() and rlm_query_batched().",
        _at_least(1),
    )
    max_llm_calls: int | None = setting(
        None,
        "Model calls allowed for the whole recursion tree (root, llm_query and every child). "
        "Empty = unlimited.",
        _at_least(1, optional=True),
    )
    max_total_tokens: int | None = setting(
        None,
        "Tokens (input+output) for the whole tree; no new call starts once reached. "
        "Empty = unlimited.",
        _at_least(1, optional=True),
    )
    max_seconds: float | None = setting(
        None,
        "Wall-clock deadline in seconds for the whole tree. Empty = none.",
        _at_least(0, strict=True, optional=True),
    )

    llm_timeout: float | None = setting(
        None,
        "Seconds one model call attempt may take; the tree's max_seconds deadline also stops a "
        "call in flight. Empty = $RLM_LLM_TIMEOUT, else the model client's own timeout (120 s "
        "for hosted providers, RLM_LOCAL_TIMEOUT for the local model).",
        _at_least(0, strict=True, optional=True),
    )
    llm_retry_seconds: float = setting(
        60.0,
        "Seconds a failing model call (rate limit, 5xx, connection error, timeout) is retried "
        "with exponential backoff and jitter, honouring retry-after; then the run ends with "
        "stopped_reason 'error' and the best answer known. 0 = no retries.",
        _at_least(0),
    )
    tool_timeout: float = setting(
        60.0,
        "Seconds one call of a tool given to build_graph(tools=...) may take; past it the code "
        "gets a ToolError (a tool's metadata['rlm_timeout'] overrides it).",
        _at_least(0, strict=True),
    )
    tool_concurrency: int = setting(
        4,
        "Calls of one tool in flight at once in the whole recursion tree (a tool's "
        "metadata['rlm_max_concurrency'] overrides it).",
        _at_least(1),
    )
    follow_up_ttl: float = setting(
        1800.0,
        "With a checkpointer and a thread_id: seconds a thread's REPL is kept after a question, "
        "so the next question on the thread keeps its variables. 0 = every question starts "
        "with a fresh REPL.",
        _at_least(0),
    )
    approve: ApproveMode | None = setting(
        None,
        "Pause for a human before code runs (LangGraph interrupt; resume with approve, edit "
        "or reject): 'code' = every reply's code at every depth, 'subcalls' = only the code "
        "of child runs (rlm_query). Empty = never.",
        ((lambda v: v in (None, "code", "subcalls")), "must be 'code', 'subcalls' or empty"),
    )
    sandbox_ttl: float | None = setting(
        None,
        "Seconds a paused run (waiting for approval) keeps its sandbox; then the sandbox is "
        "closed and the next resume rebuilds it by replaying the run's code. Empty = kept.",
        _at_least(0, strict=True, optional=True),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None and not check[0](getattr(self, f.name)):
                raise SettingError(f.name, check[1])


CONTEXT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Context))


def setting_fields() -> list[tuple[dataclasses.Field[Any], Any]]:
    """Each setting with its resolved type annotation, in declaration order (for the CLI)."""
    hints = typing.get_type_hints(Context)
    return [(f, hints[f.name]) for f in dataclasses.fields(Context)]


def parse_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as one setting: its name and its value in the field's type (``none``
    clears an optional one), range-checked. Raises ``ValueError`` with a one-line message
    (for scripts that take settings as text, such as the benchmarks)."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip().replace("-", "_"), raw.strip()
    hints = {f.name: hint for f, hint in setting_fields()}
    if not sep or name not in hints:
        raise ValueError(
            f"bad setting {text!r}: use NAME=VALUE with NAME one of {', '.join(CONTEXT_FIELDS)}"
        )
    value = _typed(name, raw, hints[name])
    Context(**{name: value})  # the range checks (SettingError)
    return name, value


def _typed(name: str, raw: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args
    if raw.lower() == "none" and optional:
        return None
    for kind in (int, float):
        if hint is kind or kind in args:
            try:
                return kind(raw)
            except ValueError:
                none = " or none" if optional else ""
                raise ValueError(f"bad setting {name}={raw}: {name} takes a number{none}") from None
    return raw


def validate_context(ctx: Context) -> None:
    """Raise ``ValueError`` with a clear message when a setting is out of range."""
    ctx.__post_init__()


def context_class_with_defaults(defaults: dict[str, Any]) -> type[Context]:
    """Return a ``Context`` subclass whose field defaults are ``defaults``.

    LangGraph builds the per-run context from the schema class, so a dict passed as
    ``context=`` gets the graph's own defaults for the fields it leaves out (and Studio's form
    shows them). Unknown names raise ``TypeError``; out-of-range values ``ValueError``.
    """
    unknown = set(defaults) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(
            f"unknown setting(s): {', '.join(sorted(unknown))}; "
            f"the settings are: {', '.join(CONTEXT_FIELDS)}"
        )
    new_fields = [
        (f.name, f.type, dataclasses.field(default=defaults[f.name], metadata=f.metadata))
        for f in dataclasses.fields(Context)
        if f.name in defaults
    ]
    cls = dataclasses.make_dataclass("Context", new_fields, bases=(Context,), kw_only=True)
    cls.__module__ = __name__
    cls.__doc__ = Context.__doc__
    cls()  # the defaults themselves must be in range
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
