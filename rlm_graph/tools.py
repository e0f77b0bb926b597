"""The run's own tools: ``build_graph(tools=[...])`` makes each one a REPL function.

A tool is a LangChain :class:`~langchain_core.tools.BaseTool` (``@tool``, ``StructuredTool``, a
toolkit's ``get_tools()``) or a plain typed callable (wrapped with
``StructuredTool.from_function``; an ``async def`` becomes its coroutine). In the sandbox each
one is a stub of the same name that sends ``call_tool(name, args, kwargs)`` over the callback
channel; the host (:class:`ToolRunner`) checks the name against the declared set — the worker
is not trusted —, maps positional arguments onto the tool's schema, and invokes the tool with
the calling node's config, so it is traced as a tool run under the node. Each call is capped
in time (``tool_timeout``) and, per tool and recursion tree, in concurrency
(``tool_concurrency``; a tool's ``metadata["rlm_max_concurrency"]`` / ``["rlm_timeout"]``
override both). An async tool is awaited with ``ainvoke`` in async runs (and always, when it
has no sync function), on an event loop of the handler thread's own.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextvars
import inspect
import json
import keyword
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.config import get_config
from pydantic import BaseModel

from rlm_graph.context import Context
from rlm_graph.runs import Run, in_async_run
from rlm_graph.sandbox.callbacks import ReportedError
from rlm_graph.sandbox.child.tables import RESERVED_NAMES

ToolLike = BaseTool | Callable[..., Any]

#: JSON schema type -> the Python annotation shown in the prompt.
_PY_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}
DESCRIPTION_CHARS = 200


class ToolError(ReportedError):
    """A tool call failed; raised in the REPL as ``ToolError`` with this message."""


def to_tools(items: Iterable[ToolLike] | None, what: str = "tools") -> dict[str, BaseTool]:
    """``items`` as tools by name; a bad item or name raises one ``ValueError`` naming it."""
    tools: dict[str, BaseTool] = {}
    for item in items or ():
        if isinstance(item, BaseTool):
            tool = item
        elif callable(item):
            tool = _from_callable(item, what)
        else:
            raise ValueError(
                f"{what}: {item!r} is neither a LangChain BaseTool nor a callable; pass @tool "
                "functions, StructuredTools or typed functions"
            )
        _check_name(tool.name, what)
        if tool.name in tools:
            raise ValueError(f"{what}: two tools are named {tool.name!r}; rename one")
        tools[tool.name] = tool
    return tools


def _from_callable(func: Callable[..., Any], what: str) -> BaseTool:
    if not (func.__doc__ or "").strip():
        raise ValueError(
            f"{what}: function {getattr(func, '__name__', func)!r} has no docstring; the model "
            "reads it as the tool's description, so add one"
        )
    if inspect.iscoroutinefunction(func):
        return StructuredTool.from_function(coroutine=func)
    return StructuredTool.from_function(func)


def _check_name(name: str, what: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{what}: tool name {name!r} is not a Python identifier; give the tool a name "
            "like 'get_weather'"
        )
    if name in RESERVED_NAMES or hasattr(builtins, name) or name.startswith("_"):
        raise ValueError(
            f"{what}: tool name {name!r} would shadow a REPL name or builtin; rename the tool"
        )


def declared(tools: Mapping[str, BaseTool]) -> list[dict[str, str]]:
    """What the sandbox needs to make each tool's stub: its name and a docstring."""
    return [{"name": n, "doc": f"{signature(t)}\n\n{t.description}"} for n, t in tools.items()]


def signature(tool: BaseTool) -> str:
    """``name(a: int, b: str = 'x')``, from the tool's argument schema."""
    params = []
    for arg, schema in tool.args.items():
        text = f"{arg}: {_type_of(schema)}"
        if "default" in schema:
            text += f" = {schema['default']!r}"
        params.append(text)
    return f"{tool.name}({', '.join(params)})"


def _type_of(schema: Mapping[str, Any]) -> str:
    if "type" in schema:
        kind = schema["type"]
        kinds = kind if isinstance(kind, list) else [kind]
        return " | ".join(_PY_TYPES.get(str(k), "Any") for k in kinds)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return " | ".join(_type_of(o) for o in options if isinstance(o, Mapping))
    return "Any"


def prompt_lines(tools: Mapping[str, BaseTool]) -> list[str]:
    """One compact line per tool for the system prompt."""
    lines = []
    for tool in tools.values():
        text = " ".join(tool.description.split())
        if len(text) > DESCRIPTION_CHARS:
            text = text[: DESCRIPTION_CHARS - 1] + "…"
        lines.append(f"`{signature(tool)}`: {text}")
    return lines


def tool_input(tool: BaseTool, args: Any, kwargs: Any) -> dict[str, Any]:
    """The tool's input dict from a call's positional and keyword arguments (worker-sent)."""
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ToolError(f"{tool.name}: malformed call")
    names = list(tool.args)
    if len(args) > len(names):
        raise ToolError(
            f"{tool.name}() takes {len(names)} argument(s) but {len(args)} were given; "
            f"its signature is {signature(tool)}"
        )
    given = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if not isinstance(key, str) or key not in names:
            raise ToolError(
                f"{tool.name}() has no argument {key!r}; its signature is {signature(tool)}"
            )
        if key in given:
            raise ToolError(f"{tool.name}() got two values for argument {key!r}")
        given[key] = value
    return given


def json_result(value: Any) -> Any:
    """A tool's result as a JSON value (pydantic models dumped, anything else ``str``)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif hasattr(value, "content") and hasattr(value, "tool_call_id"):  # a ToolMessage
        value = value.content
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
    return value


@dataclass(frozen=True)
class ToolLimits:
    """A tool's timeout (seconds) and concurrency cap."""

    timeout: float
    concurrency: int


def limits_of(tool: BaseTool, ctx: Context) -> ToolLimits:
    """The run's limits for ``tool``, with the tool's own metadata overriding them."""
    meta = tool.metadata or {}
    return ToolLimits(
        timeout=float(meta.get("rlm_timeout", ctx.tool_timeout)),
        concurrency=max(1, int(meta.get("rlm_max_concurrency", ctx.tool_concurrency))),
    )


class ToolRunner:
    """The ``call_tool`` host handler of one run: ``tools`` are the run's declared tools."""

    def __init__(self, run: Run, tools: Mapping[str, BaseTool]) -> None:
        self.run = run
        self.tools = dict(tools)

    def call_tool(self, name: Any, args: Any = None, kwargs: Any = None) -> Any:
        """Run one tool call from the sandbox and return its JSON result."""
        from rlm_graph.host_functions import subcall_events

        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ToolError(f"no tool named {str(name)[:80]!r}")
        data = tool_input(tool, args if args is not None else [], kwargs or {})
        limits = limits_of(tool, self.run.ctx)
        prompt = json.dumps(data, ensure_ascii=False, default=str)
        with subcall_events(self.run, "tool", tool.name, prompt) as outcome:
            value = json_result(self._limited(tool, data, limits))
            outcome["answer"] = prompt_text(value)
        return value

    def _limited(self, tool: BaseTool, data: dict[str, Any], limits: ToolLimits) -> Any:
        slots = self.run.tree_slots(f"tool:{tool.name}", limits.concurrency)
        with slots:
            try:
                return _call(tool, data, get_config(), limits.timeout, in_async_run.get())
            except ToolError:
                raise
            except Exception as exc:  # the tool's own failure, reported to the code
                text = str(exc) or type(exc).__name__
                raise ToolError(f"{tool.name} failed: {type(exc).__name__}: {text}") from exc


def prompt_text(value: Any) -> str:
    """A result as text for events."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _uses_async(tool: BaseTool, async_run: bool) -> bool:
    if isinstance(tool, StructuredTool):
        has_async, has_sync = tool.coroutine is not None, tool.func is not None
    else:
        has_async, has_sync = type(tool)._arun is not BaseTool._arun, True
    return has_async and (async_run or not has_sync)


def _call(
    tool: BaseTool, data: dict[str, Any], config: RunnableConfig, timeout: float, async_run: bool
) -> Any:
    if _uses_async(tool, async_run):

        async def awaited() -> Any:
            return await asyncio.wait_for(tool.ainvoke(data, config), timeout)

        try:
            return asyncio.run(awaited())
        except asyncio.TimeoutError:
            raise ToolError(f"{tool.name} timed out after {timeout:g} s") from None
    # A sync tool cannot be stopped: past its timeout the code gets an error and the call is
    # left to finish on its own daemon thread.
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            future.set_result(context.run(tool.invoke, data, config))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name=f"rlm-tool-{tool.name}", daemon=True).start()
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise ToolError(f"{tool.name} timed out after {timeout:g} s") from None


def tools_for_depth(
    depth: int, tools: Mapping[str, BaseTool], child_tools: Mapping[str, BaseTool] | None
) -> Mapping[str, BaseTool]:
    """The root's tools at depth 0; below, ``child_tools`` when given, else the same tools."""
    return tools if depth == 0 or child_tools is None else child_tools


__all__ = [
    "ToolError",
    "ToolLike",
    "ToolRunner",
    "declared",
    "prompt_lines",
    "signature",
    "to_tools",
    "tools_for_depth",
]
