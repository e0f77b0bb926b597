"""The README stays true: its commands, its graph picture, its tables and its Python examples.

Regenerate the mermaid picture after changing the graph with:
``uv run --no-sync python tests/test_readme.py --update``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MERMAID = re.compile(
    r"(<!-- mermaid:start -->\n```mermaid\n)(.*?)(```\n<!-- mermaid:end -->)", re.S
)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def marked_command(name: str) -> str:
    """The single-line command in the code block right after ``<!-- command:NAME -->``."""
    m = re.search(rf"<!-- command:{name} -->\n```bash\n(.+?)\n```", readme())
    assert m, f"README has no <!-- command:{name} --> block"
    return m.group(1).strip()


def current_mermaid() -> str:
    from rlm_graph import build_graph

    return str(build_graph().get_graph().draw_mermaid())


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme(), re.S)


def test_the_two_commands() -> None:
    main = marked_command("main")
    test = marked_command("test")
    assert main.startswith("uv run ") and main.endswith("rlm-graph demo"), main
    assert "--extra local" in main  # the offline model, no key needed
    assert test.startswith("uv run ") and test.endswith("pytest"), test
    assert "--all-extras" in test  # every tier, including local_model, runs
    # CI runs the README's test command verbatim.
    assert re.search(rf"^\s*{re.escape(test)} \|\| rc=\$\?$", (ROOT / ".ci/run").read_text(), re.M)


def test_main_command_entry_point_runs() -> None:
    """The quick start's `rlm-graph demo` reaches the demo through the installed script.

    The demo itself, on the real local model, runs in tests/test_local_model.py (local_model tier).
    """
    script = Path(sys.executable).parent / "rlm-graph"
    proc = subprocess.run(
        [str(script), "demo", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: rlm-graph demo")


def test_cli_examples_run_as_written(tmp_path: Path) -> None:
    """The CLI examples, run by bash as written; `uv run` is a shim that runs the installed
    script, and RLM_MODEL points at a scripted model (so `--sub-model groq/...` only needs a
    key to be set, never used)."""
    m = re.search(r"<!-- cli-examples -->\n```bash\n(.*?)```", readme(), re.S)
    assert m, "README has no <!-- cli-examples --> block"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "uv"
    shim.write_text(
        f'#!/bin/sh\n[ "$1" = run ] || exit 99\nshift\nexec "{Path(sys.executable).parent}/$@"\n'
    )
    shim.chmod(0o755)
    for name in ("README.md", "pyproject.toml", "uv.lock"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "RLM_MODEL": "tests.fakes:answer_model",
        "GROQ_API_KEY": "gsk-not-used",
    }
    for command in re.split(r"(?<!\\)\n", m.group(1).strip()):
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        assert proc.stdout.strip(), command
        if "--json" in command:
            assert json.loads(proc.stdout)["answer"]
        if "--trace" in command:
            assert json.loads((tmp_path / "trace.json").read_text())["root"]["iterations"]


def test_mermaid_picture_is_in_sync() -> None:
    m = MERMAID.search(readme())
    assert m, "README has no mermaid block between the markers"
    assert m.group(2).strip() == current_mermaid().strip(), (
        "graph changed: run `uv run --no-sync python tests/test_readme.py --update`"
    )


def test_every_setting_and_cli_flag_is_documented() -> None:
    from rlm_graph.cli import _build_parser
    from rlm_graph.context import Context

    text = readme()
    for f in dataclasses.fields(Context):
        assert re.search(rf"^\| `{f.name}` \|", text, re.M), f"setting {f.name} not in the table"
    for action in _build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"{flag}" in text, f"CLI flag {flag} not in README"


def test_setting_defaults_match_the_context_schema() -> None:
    from rlm_graph.context import Context

    for f in dataclasses.fields(Context):
        row = re.search(rf"^\| `{f.name}` \|[^|]*\| ([^|]*) \|", readme(), re.M)
        assert row, f.name
        shown = row.group(1).strip().strip("`")
        if f.default is None:
            assert not shown[:1].isdigit(), (f.name, shown)
        else:
            assert shown == str(f.default), (f.name, shown, f.default)


def test_every_environment_variable_is_documented() -> None:
    """Variables the package reads by name (RLM_*, provider keys and URLs) are in the README."""
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|_env_\w+\(|_require_env\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    found: set[str] = set()
    for path in (ROOT / "rlm_graph").rglob("*.py"):
        if "sandbox" in path.parts:
            continue  # the worker's own internals, not user settings
        found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    found |= {"RLM_MODEL", "RLM_SUB_MODEL"}
    user_facing = {
        v for v in found if v.startswith("RLM_") or v.endswith(("_API_KEY", "_BASE_URL", "_HOST"))
    }
    missing = sorted(v for v in user_facing if f"`{v}`" not in readme())
    assert not missing, f"environment variables missing from README: {missing}"
    env_example = (ROOT / ".env.example").read_text()
    assert "GROQ_API_KEY=" in env_example and "RLM_MODEL=" in env_example


def test_local_model_defaults_match_the_code() -> None:
    from rlm_graph.local.server import LocalSettings

    defaults = LocalSettings()
    for name in ("ctx", "threads", "max_tokens", "parallel"):
        row = re.search(rf"^\| `RLM_LOCAL_{name.upper()}` \|.*$", readme(), re.M)
        assert row, f"RLM_LOCAL_{name.upper()} has no row"
        assert f"({getattr(defaults, name)})" in row.group(0), row.group(0)
    row = re.search(r"^\| `RLM_LOCAL_TIMEOUT`.*$", readme(), re.M)
    assert row and f"({defaults.timeout:g}, {defaults.start_timeout:g})" in row.group(0)
    row = re.search(r"^\| `RLM_LOCAL_CACHE_PROMPT` \|.*$", readme(), re.M)
    assert row and f"({int(defaults.cache_prompt)})" in row.group(0)


def test_links_point_at_files() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", readme()):
        assert (ROOT / target).exists(), f"README links to missing {target}"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_example_runs_as_written(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example runs unchanged; only the provider behind the spec string is scripted."""
    import rlm_graph.models
    from tests.fakes import answer_model

    def scripted(spec: Any = None, *, role: str = "root") -> Any:
        return answer_model()

    monkeypatch.setattr(rlm_graph.models, "resolve_model", scripted)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_blocks()[index], f"README.md[python {index}]", "exec"), {})
    printed = out.getvalue()
    assert printed.strip(), "the example printed nothing"
    assert "unknown" not in printed


def _update() -> None:
    text = readme()
    new = MERMAID.sub(lambda m: m.group(1) + current_mermaid().strip() + "\n" + m.group(3), text)
    README.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        sys.path.insert(0, str(ROOT))
        _update()
    else:
        raise SystemExit("usage: python tests/test_readme.py --update")
