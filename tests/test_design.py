"""Checks on the code's shape (issue 10): public imports only, no process-global registries of
runs or budgets, no import cycles, short functions, each setting declared once, two graphs in
one process that never share live objects, and the executor seam."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import build_graph, open_runs
from rlm_graph.context import Context
from tests.fakes import FakeChatModel, code, final, is_subcall, recursive_model, turn

PACKAGE = Path(__file__).resolve().parents[1] / "rlm_graph"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    """Every module of the package (child-side sandbox modules included), by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


def test_no_private_langgraph_import() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+langgraph\._internal", re.M)
    offenders = [p for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def _module_level_containers(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        mutable = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp))
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            mutable = value.func.id in ("dict", "list", "set", "defaultdict", "WeakValueDictionary")
        if mutable:
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _mutated_names(tree: ast.Module) -> set[str]:
    """Names whose value some code mutates: ``x[k] = v``, ``x.append(...)``, ``global x``..."""
    mutating = {"append", "extend", "insert", "pop", "popitem", "clear", "update", "setdefault",
                "add", "discard", "remove", "__setitem__"}  # fmt: skip
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.update(node.names)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                    found.add(t.value.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in mutating and isinstance(node.func.value, ast.Name):
                found.add(node.func.value.id)
    return found


# The process-wide state there is on purpose, none of it runs or budgets. Anything new must be
# added here with its reason.
PROCESS_WIDE = {
    # Ctrl-C hooks (callables): the CLI registers each graph's own close_runs.
    "_exit._hooks",
    # One llama.cpp server per process and model file, shared by every graph on purpose.
    "local.server._servers",
    # What this host's kernel allows (user namespaces, landlock...), probed once.
    "strict._probe_results",
    # Syscall numbers per CPU architecture, a constant table filled at import.
    "confine.ARCHES",
    # Whether this host process was already made undumpable: process-wide by nature.
    "hostguard._done",
}


def test_no_module_level_registry_of_runs_or_budgets() -> None:
    """A module-level dict/list may be a constant table, never state that code changes (but
    for the listed process-wide resources); and none may hold runs, budgets or sandboxes."""
    problems = []
    for name, tree in _modules().items():
        containers = _module_level_containers(tree)
        mutated = _mutated_names(tree)
        for var in containers:
            allowed = any(f"{name}.{var}".endswith(entry) for entry in PROCESS_WIDE)
            if re.search(r"run|budget|registry|sandbox|live", var, re.I):
                problems.append(f"{name}.{var}: a module-level container of live objects")
            elif var in mutated and not allowed:
                problems.append(f"{name}.{var}: a module-level container that code mutates")
    assert problems == []


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """rlm_graph modules that ``name`` imports anywhere (function-level imports included)."""
    package = name if name in known and _is_package(name) else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            candidates = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for cand in candidates:
            # The sandbox's child-side modules import their siblings by bare name.
            sibling = f"{package}.{cand}"
            for full in (cand, sibling):
                if full in known and full != name:
                    found.add(full)
    return found


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / Path(*name.split(".")) / "__init__.py").exists()


def test_no_import_cycle() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, tree, known) for name, tree in modules.items()}
    # A package importing its own submodules is the usual re-export, not a cycle to care about.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_no_function_over_80_lines() -> None:
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_graph_module_only_wires() -> None:
    assert len((PACKAGE / "graph.py").read_text().splitlines()) <= 120
    nodes = (PACKAGE / "nodes.py").read_text()
    assert len(nodes.splitlines()) <= 300
    for node in ast.walk(ast.parse(nodes)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert (node.end_lineno or 0) - node.lineno + 1 <= 60, node.name


def test_build_graph_takes_exactly_the_context_settings() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Context)}
    params = inspect.signature(build_graph).parameters
    # The settings are not redeclared: they arrive as **settings and are checked by the schema.
    # tools, child_tools, output_schema and store are objects, not settings.
    assert set(params) == {
        *("model", "sub_model", "checkpointer", "executor", "store", "settings"),
        *("tools", "child_tools", "output_schema"),
    }
    graph = build_graph(**{k: v for k, v in fields.items() if k not in ("model", "sub_model")})
    schema = graph.get_context_jsonschema()
    assert schema is not None
    assert set(schema["properties"]) == set(fields)
    with pytest.raises(TypeError, match=r"unknown setting.*max_deph.*max_depth"):
        build_graph(max_deph=3)
    with pytest.raises(ValueError, match="max_depth must be >= 0"):
        build_graph(max_depth=-1)


def test_cli_has_a_flag_per_setting() -> None:
    from rlm_graph.cli import _build_parser, flag_of

    flags = {f for a in _build_parser()._actions for f in a.option_strings}
    for f in dataclasses.fields(Context):
        assert flag_of(f.name) in flags, f.name


def _counting_model(calls: int) -> FakeChatModel:
    """Root: one child per turn through rlm_query, ``calls`` turns, then the answer."""

    def respond(messages: list[Any]) -> str:
        if is_subcall(messages):
            return "sub"
        if "depth 1 of" in str(messages[0].content) or "maximum depth (1)" in str(
            messages[0].content
        ):
            return final("child")
        if turn(messages) < calls:
            return code("print(rlm_query('sub-task', 'abc'))")
        return final("root done")

    return FakeChatModel(respond=respond, latency=0.05)


def test_two_graphs_in_one_process_share_no_runs_or_budget() -> None:
    """Two graphs with different settings run at once (the first recursing): each sees only its
    own runs, and the first one's tree budget is not spent by the second."""
    first = build_graph(model=_counting_model(3), max_llm_calls=7, max_depth=1)
    second = build_graph(model=recursive_model(), max_llm_calls=50, max_depth=2)
    seen: dict[str, list[list[str]]] = {"first": [], "second": []}
    outs: dict[str, Any] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen["first"].append(open_runs(first))
            seen["second"].append(open_runs(second))
            stop.wait(0.005)

    def run(name: str, graph: Any, query: str) -> None:
        outs[name] = graph.invoke({"query": query, "context": "x" * 100})

    watcher = threading.Thread(target=watch)
    workers = [
        threading.Thread(target=run, args=("first", first, "count")),
        threading.Thread(target=run, args=("second", second, "what")),
    ]
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    stop.set()
    watcher.join()
    # 3 root turns + 3 children + 1 answer turn = 7 calls: exactly the first graph's cap, which
    # would be exceeded (or refused) if the second graph's calls were counted in its budget.
    assert outs["first"]["answer"] == "root done"
    assert outs["first"]["usage"]["llm_calls"] == 7
    assert outs["second"]["answer"].startswith("child saw")
    first_ids = {i for ids in seen["first"] for i in ids}
    second_ids = {i for ids in seen["second"] for i in ids}
    assert len(first_ids) >= 2, "the recursing graph's child run was never seen open"
    assert first_ids and second_ids and not first_ids & second_ids
    assert open_runs(first) == open_runs(second) == []


@dataclasses.dataclass
class _Outcome:
    output: str
    output_chars: int
    error: str | None
    final_answer: str | None
    timed_out: bool = False
    restarted: bool = False
    seconds: float = 0.0


class InProcessExecutor:
    """An executor without a process: ``exec`` in a dict namespace (tests only: not isolated)."""

    instances: list[InProcessExecutor] = []  # noqa: RUF012 - test bookkeeping

    def __init__(self, spec: Any) -> None:
        self.exec_timeout = spec.exec_timeout
        self.closed = False
        self.namespace: dict[str, Any] = {"context": spec.payload, "query": spec.query}
        self.namespace.update(spec.handlers)
        InProcessExecutor.instances.append(self)

    def run(self, source: str) -> _Outcome:
        import contextlib
        import io

        answer: list[str] = []
        self.namespace["final_answer"] = lambda v: answer.append(str(v))
        buf = io.StringIO()
        error = None
        with contextlib.redirect_stdout(buf):
            try:
                exec(source, self.namespace)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        out = buf.getvalue()
        return _Outcome(out, len(out), error, answer[0] if answer else None)

    async def arun(self, source: str) -> _Outcome:
        return self.run(source)

    def close(self) -> None:
        self.closed = True


def test_executor_factory_replaces_the_sandbox() -> None:
    InProcessExecutor.instances.clear()
    model = FakeChatModel(
        respond=lambda m: (
            code("n = len(context)\nprint(n)") if turn(m) == 0 else code("final_answer(n * 2)")
        )
    )
    graph = build_graph(model=model, executor=InProcessExecutor)
    out = graph.invoke({"query": "q", "context": "abcd"})
    assert out["answer"] == "8" and out["stopped_reason"] == "final_answer"
    [executor] = InProcessExecutor.instances
    assert executor.closed, "the run did not close its executor"
    assert executor.namespace["n"] == 4
    assert set(executor.namespace) >= {"llm_query", "rlm_query"}
