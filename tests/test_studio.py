"""LangGraph Studio, for real: `langgraph dev` on loopback, driven through `langgraph_sdk`.

The server loads `graphs/rlm.py:graph` through `langgraph.json`, with `RLM_MODEL` pointing at a
scripted model that recurses once, so the run is offline and deterministic.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlm_graph.context import Context

ROOT = Path(__file__).resolve().parent.parent
RECURSIVE_MODEL = "tests.fakes:recursive_model"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _langgraph_cli() -> str:
    found = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if found is None:
        pytest.skip("langgraph-cli is not installed (uv sync --extra studio)")
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Server:
    """A `langgraph dev` process in its own process group, logging to a file."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            "RLM_MODEL": RECURSIVE_MODEL,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        }
        env.pop("RLM_SUB_MODEL", None)
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [
                _langgraph_cli(),
                "dev",
                "--no-browser",
                "--no-reload",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole, nothing leaks
        )
        self.pgid = self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, deadline_s: float = 120.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"langgraph dev exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"langgraph dev not ready on {self.url}:\n{self.log_tail()}")

    def stop(self) -> None:
        if _group_alive(self.pgid):
            os.killpg(self.pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        # Stragglers in the group (e.g. sandbox workers) must not outlive the server.
        deadline = time.monotonic() + 30
        while _group_alive(self.pgid) and time.monotonic() < deadline:
            os.killpg(self.pgid, signal.SIGKILL)
            time.sleep(0.1)
        self._log_file.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("studio") / "langgraph-dev.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
    assert srv.proc.returncode is not None
    assert not _group_alive(srv.pgid), "langgraph dev's process group outlived stop()"


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=server.url, api_key=None)


@pytest.mark.parametrize("local_installed", [False, True])
def test_graph_module_loads_without_any_key(
    monkeypatch: pytest.MonkeyPatch, local_installed: bool
) -> None:
    """Studio must be able to load the graph and list its schemas on a fresh machine."""
    import runpy

    import rlm_graph.local

    for var in ("RLM_MODEL", "RLM_SUB_MODEL", "GROQ_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(rlm_graph.local, "local_extra_installed", lambda: local_installed)
    graph = runpy.run_path(str(ROOT / "graphs" / "rlm.py"))["graph"]
    assert graph.name == "rlm"
    assert graph.get_context_jsonschema()["properties"]["model"]["default"] == (
        "local" if local_installed else None
    )


@pytest.mark.studio
def test_assistant_and_schemas(client: Any) -> None:
    assistants = client.assistants.search(graph_id="rlm")
    assert assistants, "no assistant for graph 'rlm'"
    schemas = client.assistants.get_schemas(assistants[0]["assistant_id"])

    props = schemas["context_schema"]["properties"]
    fields = {f.name for f in dataclasses.fields(Context)}
    assert fields <= set(props), f"missing settings: {fields - set(props)}"
    for name in fields:
        assert props[name].get("description"), f"setting {name!r} has no description in Studio"
    assert props["max_depth"].get("default") == 2

    assert "query" in schemas["input_schema"]["properties"]
    output = set(schemas["output_schema"]["properties"])
    assert {"answer", "usage", "iterations", "stopped_reason"} <= output


@pytest.mark.studio
def test_recursive_thread_streams_nested_events(client: Any) -> None:
    thread = client.threads.create()
    custom: list[tuple[str, dict[str, Any]]] = []
    root_values: dict[str, Any] = {}
    for part in client.runs.stream(
        thread["thread_id"],
        "rlm",
        input={"query": "How many lines are there?", "context": "line\n" * 2000},
        stream_mode=["custom", "values"],
        stream_subgraphs=True,
    ):
        if part.event == "error":
            raise AssertionError(f"run failed on the server: {part.data}")
        if part.event.startswith("custom"):
            custom.append((part.event, part.data))
        elif part.event == "values":
            root_values = part.data

    events = [data for _, data in custom]
    roots = [e for e in events if e["event"] == "run_start" and e["depth"] == 0]
    children = [e for e in events if e["event"] == "run_start" and e["depth"] == 1]
    assert len(roots) == 1 and children, [e["event"] for e in events]
    assert all(c["parent_run_id"] == roots[0]["run_id"] for c in children)
    # The child's events arrive from a nested namespace ("custom|<ns>"), not the root's.
    child_ids = {c["run_id"] for c in children}
    assert any("|" in name for name, data in custom if data["run_id"] in child_ids)
    assert any(e["event"] == "subcall_end" and e["kind"] == "rlm" for e in events)

    assert root_values.get("answer"), root_values
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["answer"] == root_values["answer"]
    assert state["values"]["stopped_reason"]
