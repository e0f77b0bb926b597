"""Dead ends (issue 12): a small model's reply whose search found nothing is taken out of the
history and asked again with sampling, once per run by default. Scripted models whose replies
depend on their temperature, the real sandbox."""

from __future__ import annotations

import io
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import Field

from rlm_graph import build_graph, dead_ends
from rlm_graph.events import EVENT_TYPES
from rlm_graph.model_profile import SMALL_MODEL_TAG
from rlm_graph.progress import PlainProgress, TraceBuilder
from rlm_graph.tracefile import TraceWriter
from rlm_graph.viewer import load_trace
from rlm_graph.viewer.model import view_model
from tests.fakes import FakeChatModel, code, final, is_subcall, last_text, text_of, turn

MISS = code("print(context.count('zzz'))")  # the search finds nothing: prints 0
HIT = code("print(context.count('4417'))")  # prints 3


class SamplingFake(FakeChatModel):
    """A scripted model with the ``temperature`` and ``seed`` fields real chat models have;
    ``log`` records them per call (shared by its copies)."""

    temperature: float = 0.0
    seed: int | None = None
    log: list[tuple[float, int | None]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.log.append((self.temperature, self.seed))
        return super()._generate(messages, *args, **kwargs)


def _model(greedy: list[str], sampled: list[str], small: bool = True) -> SamplingFake:
    """Replies by turn: ``greedy`` at temperature 0, ``sampled`` when sampling."""
    holder: list[SamplingFake] = []

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "ok"
        script = sampled if holder[0].log[-1][0] > 0 else greedy
        return script[min(turn(messages), len(script) - 1)]

    model = SamplingFake(respond=respond, tags=[SMALL_MODEL_TAG] if small else None)
    holder.append(model)
    return model


def _invoke(model: SamplingFake, **settings: Any) -> dict[str, Any]:
    graph = build_graph(model=model, **settings)
    return graph.invoke(
        {"query": "How often does code 4417 occur?", "context": "k blue-fox code 4417\n" * 3}
    )


def test_a_dead_end_is_asked_again_without_it_in_view_and_sampled() -> None:
    # Greedy, the model would re-send the failed block forever; sampled, it writes another.
    # The sampled block reads a variable the dead end defined: the REPL ran both.
    after = code("print(context.count('4417') + missed)")
    model = _model(greedy=[code("missed = context.count('zzz'); print(missed)"), final("3")],
                   sampled=[after, final("3")])  # fmt: skip
    out = _invoke(model)
    assert out["answer"] == "3"
    assert out["iterations"] == 3  # the dead end counts as a reply
    assert model.log == [(0.0, None), (dead_ends.TEMPERATURE, 2), (0.0, None)]
    first, again, last = model.prompts
    assert again == first  # the failed reply and its observation are out of the history
    assert "zzz" not in "".join(text_of(m) for m in last)
    assert last_text(last).startswith("Observation:\n3")


def test_only_one_dead_end_per_run_by_default() -> None:
    # The sampled reply fails too: the second dead end is shown to the model with its hint.
    model = _model(greedy=[MISS, HIT, final("3")], sampled=[MISS, final("3")])
    out = _invoke(model)
    assert [t for t, _ in model.log] == [0.0, dead_ends.TEMPERATURE, 0.0, 0.0]
    assert "Hint: that result is empty or 0" in last_text(model.prompts[2])
    assert out["answer"] == "3"


def test_the_setting_gives_more_retries_or_none() -> None:
    model = _model(greedy=[MISS, final("3")], sampled=[MISS, MISS, HIT, final("3")])
    _invoke(model, dead_end_retries=2)
    temperatures = [t for t, _ in model.log]
    assert temperatures[:4] == [0.0, dead_ends.TEMPERATURE, dead_ends.TEMPERATURE, 0.0]
    model = _model(greedy=[MISS, final("3")], sampled=[HIT, final("3")])
    _invoke(model, dead_end_retries=0)
    assert {t for t, _ in model.log} == {0.0}
    assert "Hint: that result is empty or 0" in last_text(model.prompts[1])


def test_other_models_see_their_dead_ends_by_default() -> None:
    # A large model learns from the failed attempt; only small models are retried unless set.
    model = _model(greedy=[MISS, final("3")], sampled=[HIT, final("3")], small=False)
    _invoke(model)
    assert [t for t, _ in model.log] == [0.0, 0.0]
    model = _model(greedy=[MISS, final("3")], sampled=[HIT, final("3")], small=False)
    assert _invoke(model, dead_end_retries=1)["answer"] == "3"
    assert [t for t, _ in model.log] == [0.0, dead_ends.TEMPERATURE, 0.0]


def test_a_result_that_found_something_is_not_a_dead_end() -> None:
    model = _model(greedy=[HIT, final("3")], sampled=[MISS, final("0")])
    assert _invoke(model)["answer"] == "3"
    assert [t for t, _ in model.log] == [0.0, 0.0]


def test_no_retry_on_the_last_reply() -> None:
    # With one reply left there is no room to ask again: the forced answer follows.
    model = _model(greedy=[MISS, final("3")], sampled=[HIT, final("3")])
    _invoke(model, max_iterations=1)
    assert [t for t, _ in model.log] == [0.0, 0.0]


def test_a_model_without_sampling_fields_is_asked_as_it_is() -> None:
    plain = FakeChatModel(respond=lambda m: "x")
    assert dead_ends.sampled(plain, 2) is plain
    copy = dead_ends.sampled(SamplingFake(respond=lambda m: "x"), 5)
    assert (copy.temperature, copy.seed) == (dead_ends.TEMPERATURE, 5)


STREAMED = {"query": "How often does code 4417 occur?", "context": "code 4417\n" * 3}


def _stream(model: SamplingFake, writer: TraceWriter | None = None) -> tuple[TraceBuilder, str]:
    """Run ``STREAMED`` as the CLI does: each custom event to the trace builder, the plain
    progress printer and ``writer``; returns the builder and the progress lines."""
    builder, lines = TraceBuilder(), io.StringIO()
    progress = PlainProgress(builder, lines)
    for event in build_graph(model=model).stream(STREAMED, stream_mode="custom"):
        if writer is not None:
            writer.event(event)
        builder.add(event)
        progress.on_event(event)
    return builder, lines.getvalue()


def test_the_trace_progress_and_viewer_show_the_dead_end(tmp_path: Any) -> None:
    model = _model(greedy=[MISS, final("3")], sampled=[HIT, final("3")])
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, {"query": STREAMED["query"]}) as writer:
        builder, lines = _stream(model, writer)
    events = [e for e in load_trace(path)["events"] if e["event"] == "dead_end"]
    assert [(e["iteration"], e["retries_left"], e["reason"]) for e in events] == [
        (1, 0, "found_nothing")
    ]
    assert set(events[0]) == set(EVENT_TYPES["dead_end"].__required_keys__)
    assert "dead end: the search found nothing" in lines
    tree = builder.tree()
    assert tree is not None
    assert [it["dead_end"] for it in tree["iterations"]] == [True, False, False]
    (root,) = view_model(load_trace(path))["runs"]
    assert [it["dead_end"] for it in root["iterations"]] == [True, False, False]
    # The dead end's block is in the trace with what it printed.
    assert root["iterations"][0]["blocks"][0]["output"].strip() == "0"


def test_an_empty_result_after_grep_found_lines_is_not_a_dead_end() -> None:
    # grep showed real lines: the observation holds what the model needs, so it stays in view.
    after_grep = code("grep('4417')\nprint(context.count('zzz'))")
    model = _model(greedy=[after_grep, final("3")], sampled=[HIT, final("3")])
    _invoke(model)
    assert {t for t, _ in model.log} == {0.0}
    assert "grep found matching lines above" in last_text(model.prompts[1])


def test_a_reply_with_neither_code_nor_an_answer_is_asked_again_unseen() -> None:
    # Greedy, the model sends the same prose again whatever the correction says (dev traces:
    # the last hint copied as the reply, four times in a row); sampled, it writes code.
    prose = "Thought: the last result is empty; read the answer from the lines above."
    model = _model(greedy=[prose, final("3")], sampled=[HIT, final("3")])
    out = _invoke(model)
    assert out["answer"] == "3"
    assert [t for t, _ in model.log] == [0.0, dead_ends.TEMPERATURE, 0.0]
    first, again, last = model.prompts
    assert again == first  # the prose reply is out of the history
    assert prose not in "".join(text_of(m) for m in last)
    assert last_text(last).startswith("Observation:\n3")


def test_a_refused_answer_keeps_its_own_message() -> None:
    # A placeholder answer gets the loop's reason, not a silent retry: it is no dead end.
    model = _model(greedy=[final("<answer>"), HIT, final("3")], sampled=[HIT, final("3")])
    assert _invoke(model)["answer"] == "3"
    assert {t for t, _ in model.log} == {0.0}
    assert "<answer>" in last_text(model.prompts[1])


def test_the_progress_line_names_a_code_less_dead_end() -> None:
    prose = "Thought: the last result is empty; read the answer from the lines above."
    model = _model(greedy=[prose, final("3")], sampled=[HIT, final("3")])
    _, lines = _stream(model)
    assert "dead end: neither code nor an answer; asked again" in lines
