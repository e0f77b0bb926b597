"""The root prompts: the compact variant for small models and how the graph picks it (offline)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, SystemMessage

from rlm_graph import build_graph, model_profile, prompts
from rlm_graph.context import Context, validate_context
from rlm_graph.parsing import parse_reply
from tests.fakes import FakeChatModel, code, final, text_of, turn

FUNCTIONS = (
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "final_answer",
)
MARKER = "ZQX-UNIQUE-PAYLOAD-MARKER-7731"


def _prompt(*, compact: bool, depth: int = 0, max_depth: int = 2) -> str:
    return prompts.system_prompt(
        depth=depth,
        max_depth=max_depth,
        max_iterations=20,
        max_output_chars=2_000,
        max_concurrency=8,
        remaining={"llm_calls": 100, "total_tokens": 1_000_000, "seconds": 3_600},
        compact=compact,
    )


def test_compact_prompt_is_small_and_complete() -> None:
    for depth in (0, 2):
        text = _prompt(compact=True, depth=depth)
        # ~4 chars per token: at most ~600 tokens (two short examples; the local server's
        # prompt cache makes this fixed prefix cheap after the first call).
        assert len(text) / 4 <= 600, len(text)
        assert prompts.COMPACT_EXAMPLE_TEXT in text
        for name in (*FUNCTIONS, "grep", "chunks"):
            assert f"{name}(" in text, name
        assert "20 replies" in text and "100 model calls left" in text and "3600 s left" in text
        assert "2,000 chars" in text
        assert "<answer>" not in text and "<the answer>" not in text  # copied verbatim before
    assert "depth 0 of 2" in _prompt(compact=True, depth=0)
    assert "maximum depth (2)" in _prompt(compact=True, depth=2)
    assert "plain model call" in _prompt(compact=True, depth=2)


# Data each compact example is written for, and what its code must print last.
EXAMPLE_DATA = (
    ("Contacts\nDana Reyes, phone 555-0142, Lisbon\nOmar Li, phone 555-0199\n", "555-0142"),
    ("order 1 shipped\norder 2 refunded\norder 3 Refund issued\norder 4 shipped\n", "2"),
)


def test_compact_examples_differ_and_each_computes_its_answer() -> None:
    from rlm_graph.repl_helpers import prelude

    assert len(prompts.COMPACT_EXAMPLES) == len(EXAMPLE_DATA) == 2
    for (question, reply), (data, expected) in zip(
        prompts.COMPACT_EXAMPLES, EXAMPLE_DATA, strict=True
    ):
        parsed = parse_reply(reply)
        assert parsed.thought and parsed.final_answer is None, question
        assert len(parsed.code_blocks) == 1, question
        namespace: dict[str, Any] = {"context": data}
        exec(prelude(40), namespace)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(parsed.code_blocks[0], namespace)
        lines = out.getvalue().strip().splitlines()
        assert lines[-1] == expected, (question, out.getvalue())
    # Different kinds of code: a capture group, then a filter and total.
    codes = [parse_reply(r).code_blocks[0] for _, r in prompts.COMPACT_EXAMPLES]
    assert ".group(1)" in codes[0] and "len(" in codes[1] and ".group(" not in codes[1]


def test_compact_examples_are_not_the_demo_task() -> None:
    # The demo and its benchmark must measure the model's own code, not a copy of an example.
    from rlm_graph.demo import QUESTION

    text = prompts.COMPACT_EXAMPLE_TEXT.lower()
    for word in ("error", "count", "lines", "payment", "splitlines"):
        assert word not in text, word
    assert "error" in QUESTION.lower()


def test_selection_rules() -> None:
    small = FakeChatModel(respond=lambda m: "", tags=[model_profile.SMALL_MODEL_TAG])
    other = FakeChatModel(respond=lambda m: "")
    assert model_profile.is_small_model(small) and not model_profile.is_small_model(other)
    assert model_profile.use_compact_prompt("auto", small)
    assert not model_profile.use_compact_prompt("auto", other)
    assert model_profile.use_compact_prompt("compact", other)
    assert not model_profile.use_compact_prompt("full", small)
    assert model_profile.default_output_chars(small) == 2_000
    assert model_profile.default_output_chars(other) == 20_000
    validate_context(Context(prompt_style="compact"))
    with pytest.raises(ValueError, match="prompt_style"):
        validate_context(Context(prompt_style="tiny"))  # type: ignore[arg-type]


def test_local_model_is_tagged_small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    from rlm_graph.models import resolve_model

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    model = resolve_model(f"local/{gguf}")  # nothing starts at resolve time
    assert model_profile.is_small_model(model)
    assert "rlm:root" in (model.tags or [])


def _run(model: FakeChatModel, seen: list[list[BaseMessage]], **settings: Any) -> dict[str, Any]:
    # The payload's marker sits far past the preview: it must reach the sandbox only.
    payload = "x" * 5_000 + MARKER + "\n" + "line\n" * 10
    graph = build_graph(model=model, **settings)
    out = graph.invoke({"query": "How many chars?", "context": payload})
    assert out["answer"] == "done"
    system = seen[0][0]
    assert isinstance(system, SystemMessage)
    assert all(MARKER not in text_of(m) for m in seen[0])
    return {"system": text_of(system), "observation": text_of(seen[1][-1])}


def _model(tags: list[str] | None = None) -> tuple[FakeChatModel, list[list[BaseMessage]]]:
    seen: list[list[BaseMessage]] = []

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(list(messages))
        # "done" is in no output: a small model's run asks once to confirm it.
        return [code("print('y' * 5000)"), final("done")][min(turn(messages), 1)]

    return FakeChatModel(respond=respond, tags=tags), seen


def test_graph_gives_small_models_the_compact_prompt_and_short_output() -> None:
    model, seen = _model([model_profile.SMALL_MODEL_TAG])
    got = _run(model, seen)
    assert prompts.COMPACT_EXAMPLE_TEXT in got["system"]
    assert "[output truncated: 5,001 chars in total]" in got["observation"]
    assert got["observation"].count("y") <= 2_000


def test_graph_gives_other_models_the_full_prompt_and_long_output() -> None:
    model, seen = _model()
    got = _run(model, seen)
    assert prompts.COMPACT_EXAMPLE_TEXT not in got["system"]
    assert "Example reply:" in got["system"] and "20,000 chars" in got["system"]
    assert "truncated" not in got["observation"]


def test_explicit_settings_win_over_the_model_tag() -> None:
    model, seen = _model([model_profile.SMALL_MODEL_TAG])
    got = _run(model, seen, prompt_style="full", max_output_chars=6_000)
    assert prompts.COMPACT_EXAMPLE_TEXT not in got["system"] and "6,000 chars" in got["system"]
    assert "truncated" not in got["observation"]
    model, seen = _model()
    got = _run(model, seen, prompt_style="compact")
    assert prompts.COMPACT_EXAMPLE_TEXT in got["system"] and "20,000 chars" in got["system"]


if __name__ == "__main__":  # print both prompts and their sizes
    for compact in (False, True):
        text = _prompt(compact=compact)
        print(
            f"--- compact={compact}: {len(text)} chars ≈ {len(text) // 4} tokens", file=sys.stderr
        )
        print(text)
