"""Model-written text cannot drive the terminal: live tree, plain lines, the answer, the demo."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from rlm_graph.progress import LiveTree, PlainProgress, TraceBuilder
from rlm_graph.terminal import markup_safe, safe_quoted, safe_text
from tests.ptyrun import run_in_pty

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "rlm-graph")

CLEAR = "\x1b[2J"
TITLE = "\x1b]0;pwned\x07"
LINK = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
MARKUP = "[bold red]RED[/bold red]"
RICH_LINK = "[link=https://evil.example]LNK[/link]"
HOSTILE = f"{MARKUP}{CLEAR}{TITLE}{RICH_LINK}"


def _has_control(text: str) -> bool:
    return any(
        (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
        for c in text
    )


def _is_red(style: Any) -> bool:
    return bool(style and style.color and style.color.name == "red")


def test_safe_text_shows_every_control_sequence_as_text() -> None:
    raw = f"a{CLEAR}b{TITLE}c{LINK}\x9b31m\u202eevil\ud800\x7f\tend\nnext ünï 漢字"
    out = safe_text(raw)
    assert not _has_control(out)
    assert "\\x1b[2J" in out and "\\x1b]0;pwned\\x07" in out and "\\x9b31m" in out
    assert "\\u202e" in out and "\\ud800" in out and "\\x7f" in out
    assert "\tend\nnext ünï 漢字" in out  # tab, newline and ordinary text kept
    out.encode("utf-8")  # no lone surrogate left
    assert "\n" not in safe_text("a\nb", keep_newlines=False)
    assert safe_text("plain text") == "plain text"


def test_markup_helpers_escape_rich_markup() -> None:
    console = Console(file=io.StringIO(), width=400, force_terminal=True, color_system="standard")
    for text in (markup_safe(HOSTILE), safe_quoted(HOSTILE)):
        segments = list(console.render(text))
        shown = "".join(s.text for s in segments)
        assert MARKUP in shown and RICH_LINK in shown, shown
        assert not any(s.style and s.style.link for s in segments)
        assert not any("RED" in s.text and _is_red(s.style) for s in segments)
        assert "\x1b" not in shown


def _ev(event: str, run: str, parent: str | None, depth: int, it: int, **kw: Any) -> dict:
    return {"event": event, "run_id": run, "parent_run_id": parent, "depth": depth,
            "iteration": it, "t": 0.1, **kw}  # fmt: skip


def hostile_events() -> list[dict[str, Any]]:
    """A run in which every model-written field carries markup and escape sequences."""
    return [
        _ev("run_start", "R", None, 0, 0, query=f"q{HOSTILE}", context_type="str",
            context_chars=5),
        _ev("iteration_start", "R", None, 0, 1),
        _ev("model_reply", "R", None, 0, 1, thought=f"t{HOSTILE}", n_code_blocks=1,
            has_final=False, seconds=0.1, usage={}),
        _ev("code", "R", None, 0, 1, index=0, code=f"c{HOSTILE}"),
        _ev("subcall_start", "R", None, 0, 1, call_id="s1", kind="llm", prompt=f"p{HOSTILE}"),
        _ev("subcall_end", "R", None, 0, 1, call_id="s1", kind="llm", seconds=0.1,
            answer=f"a{HOSTILE}", error=f"e{HOSTILE}"),
        _ev("observation", "R", None, 0, 1, index=0, output=f"o{HOSTILE}", output_chars=9,
            error=f"e{HOSTILE}", seconds=0.1, timed_out=False, restarted=False),
        _ev("final", "R", None, 0, 1, answer=f"A{HOSTILE}", stopped_reason="final_answer",
            iterations=1),
        _ev("run_end", "R", None, 0, 1, usage={}, seconds=0.2),
    ]  # fmt: skip


def test_live_tree_interprets_no_model_markup_or_escapes() -> None:
    console = Console(file=io.StringIO(), width=400, force_terminal=True, color_system="standard")
    builder = TraceBuilder()
    live = LiveTree(builder, console=console)
    try:
        for e in hostile_events():
            builder.add(e)
            live.on_event(e)
        segments = list(console.render(live.render()))
    finally:
        live.live.stop()
    shown = "".join(s.text for s in segments)
    assert "\x1b" not in shown and "\x07" not in shown
    assert not any(s.style and s.style.link for s in segments), "a link was made"
    assert not any("RED" in s.text and _is_red(s.style) for s in segments)
    # Each field shows the markup as text: query, thought, code, prompt, answer.
    for prefix in ("q", "t", "c", "p", "A"):
        assert f"{prefix}[bold red]RED" in shown or f"'{prefix}[bold red]RED" in shown, prefix
    assert "\\x1b[2J" in shown  # shown, escaped


def test_plain_lines_carry_no_control_characters() -> None:
    out = io.StringIO()
    builder = TraceBuilder()
    progress = PlainProgress(builder, out)
    for e in hostile_events():
        builder.add(e)
        progress.on_event(e)
    text = out.getvalue()
    assert text.count("\n") == len(text.splitlines()) > 5
    assert not _has_control(text.replace("\n", ""))
    assert "\\x1b]0;pwned\\x07" in text


HOSTILE_MODEL = f"""
from tests.fakes import FakeChatModel, code, final, scripted

HOSTILE = {HOSTILE + LINK!r}


def model():
    return FakeChatModel(respond=scripted(
        code("print(" + repr("out" + HOSTILE) + ")", "think" + HOSTILE),
        final("answer" + HOSTILE, "done" + HOSTILE),
    ))
"""


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", TERM="xterm")
    return env


def test_cli_on_a_terminal_passes_no_sequence_through(tmp_path: Path) -> None:
    (tmp_path / "hostile_model.py").write_text(HOSTILE_MODEL)
    screen = run_in_pty(
        [SCRIPT, "q", "--model", "hostile_model:model"], cwd=tmp_path, env=_env(), timeout=120
    )
    assert screen.returncode == 0, screen.text
    data = screen.data
    for seq in (CLEAR, TITLE, "\x1b]8;", "\x1b]0;"):
        assert seq.encode() not in data, (seq, screen.text[-2000:])
    assert b"[bold red]RED" in data  # shown as text, in the tree and the answer
    assert b"answer[bold red]RED[/bold red]\\x1b[2J\\x1b]0;pwned\\x07" in data


def test_json_and_piped_answers_stay_raw(tmp_path: Path) -> None:
    (tmp_path / "hostile_model.py").write_text(HOSTILE_MODEL)
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            [SCRIPT, "q", "--model", "hostile_model:model", "--quiet", *extra],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)["answer"] if extra else proc.stdout.rstrip("\n")
        assert answer == "answer" + HOSTILE + LINK


SLOW_MODEL = """
from tests.fakes import answer_model


def model():
    return answer_model(latency=3.0)
"""


def test_live_tree_clock_ticks_while_the_model_is_awaited(tmp_path: Path) -> None:
    import re

    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    screen = run_in_pty(
        [SCRIPT, "How long?", "--model", "slow_model:model"], cwd=tmp_path, env=_env(),
        timeout=120,
    )  # fmt: skip
    assert screen.returncode == 0, screen.text
    # (time seen, seconds shown) of every "waiting for the model… N.Ns" drawn.
    shown = [
        (t, float(m.group(1)))
        for t, chunk in screen.chunks
        for m in re.finditer(r"waiting for the model… (\d+\.\d)s", chunk.decode("utf-8", "replace"))
    ]
    values = sorted({v for _, v in shown})
    # Each call sleeps 3 s with no event in between: the line is redrawn with a growing clock.
    assert len(values) >= 4 and values[-1] >= 2.0, values
    assert [v for _, v in shown[:4]] == sorted(v for _, v in shown[:4])
    # The final, full tree no longer waits.
    assert "waiting for the model" not in screen.text.rsplit("✓ d0", 1)[-1]
