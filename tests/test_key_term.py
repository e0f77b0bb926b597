"""The search the loop names for a small model: the question's rarest term in the data, looked
up in the sandbox once per run before the model's first block (rlm_graph.key_terms), named by the
answer checks and the hints, and shown in place by the probe after a failed search. Scripted
models, the real sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from langchain_core.messages import BaseMessage

from rlm_graph import build_graph, key_terms, prompts
from rlm_graph.model_profile import SMALL_MODEL_TAG
from tests.fakes import FakeChatModel, code, final, last_text, turn

QUERY = "What is the code of key blue-fox in the Harbour file?"
CONTEXT = "Harbour log\nk blue-fox code 4417\nk red-owl code 1200\nk blue-fox again\n"


def _run(
    replies: list[str], query: str = QUERY, context: str = CONTEXT, **settings: Any
) -> list[list[Any]]:
    seen: list[list[BaseMessage]] = []

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(list(messages))
        return replies[min(turn(messages), len(replies) - 1)]

    model = FakeChatModel(respond=respond, tags=[SMALL_MODEL_TAG])
    build_graph(model=model, **settings).invoke({"query": query, "context": context})
    return seen


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        (QUERY, ["blue-fox", "Harbour"]),
        ("How many records belong to user 48190? Answer with a number.", ["48190"]),
        ("Which classes have ModelError as a base? Answer with names.", ["ModelError"]),
        ("Which classes subclass Generic?", ["Generic"]),  # capitalised inside a sentence
        (
            "The files follow '### FILE: <path>'.\nWhich file defines X2?",
            ["### FILE: <path>", "X2"],
        ),
        ("How many lines have level ERROR in `context`?", ["context", "ERROR"]),
        ("In the file a/b.py, what is the default of 'limit'?", ["limit", "a/b.py"]),
        ("How many lines are there? Count them.", []),  # sentence starts are not names
    ],
)
def test_the_questions_terms(query: str, terms: list[str]) -> None:
    assert key_terms.question_terms(query) == terms


@pytest.mark.parametrize(
    ("terms", "counts", "term"),
    [
        (["blue-fox", "48190"], "3\t35", "blue-fox"),  # the rarer name
        (["a-b", "a-bc"], "2\t2", "a-bc"),  # a tie: the longer one
        (["blue-fox", "Harbour"], "0\t1", "Harbour"),  # a capitalised word when no name occurs
        (["blue-fox", "Harbour"], "9\t1", "blue-fox"),  # ... and only then
        (["blue-fox"], "0", None),  # the data does not have it
    ],
)
def test_the_rarest_term_the_data_holds(terms: list[str], counts: str, term: str | None) -> None:
    found = key_terms.key_term(terms, f"\n{counts}\n")
    assert (found["term"] if found else None) == term


@pytest.mark.parametrize(
    "output",
    ["", "3", "3\t4\t5", "3\tmany", "\u00b2\t1", "-1\t2", "1" * 40 + "\t2", "3 \t4"],
)
def test_a_tampered_lookup_names_nothing(output: str) -> None:
    # The counts are printed in the sandbox, where the model's code runs: anything else than
    # one count per term is ignored, and a term named is always the question's own.
    assert key_terms.key_term(["blue-fox", "red-owl"], output) is None


def test_a_guess_is_told_the_term_to_grep() -> None:
    seen = _run([code("print(len(context))"), final("12345"), final("12345")])
    message = last_text(seen[2])
    assert "is a guess" in message
    assert "grep('blue-fox') ('blue-fox' is the question's rarest word in context: 2 times)" in (
        message
    )


def test_an_answer_saying_nothing_was_found_is_told_the_term_to_grep() -> None:
    replies = [code("print(1)"), final("There is no code for that key."), final("4417")]
    message = last_text(_run(replies)[2])
    assert "says nothing was found" in message and "grep('blue-fox')" in message


def test_the_lookup_runs_before_the_models_code_and_leaves_no_name() -> None:
    # The model's first block empties `context` and looks for the lookup's helper: the term
    # was counted before, and the helper is gone.
    first = code("print('_rlm_terms' in globals())\ncontext = ''")
    seen = _run([first, final("12345"), final("12345")])
    assert "False" in last_text(seen[1])
    assert "grep('blue-fox')" in last_text(seen[2])


def test_without_a_term_in_the_data_the_message_stays_general() -> None:
    seen = _run([code("print(1)"), final("12345"), final("12345")], context="nothing here\n")
    assert prompts.SEARCH_ANY in last_text(seen[2])
    # A guess before any block ran: nothing was looked up yet.
    seen = _run([final("12345"), final("12345")])
    assert prompts.SEARCH_ANY in last_text(seen[1])


@dataclass
class _Outcome:
    output: str = ""
    error: str | None = None
    restarted: bool = False


def _lookup(state: dict[str, Any], outcome: _Outcome) -> tuple[dict[str, Any], str | None]:
    steps = key_terms.key_term_once(cast(Any, None), cast(Any, state))
    try:
        next(steps)
        steps.send(outcome)
    except StopIteration as done:
        return cast(tuple[dict[str, Any], str | None], done.value)
    raise AssertionError("the lookup runs one block")


def test_a_lookup_cut_off_by_the_timeout_tells_the_model_its_repl_restarted() -> None:
    state = {"check_answers": True, "query": QUERY}
    update, note = _lookup(state, _Outcome(restarted=True))
    assert note == prompts.RESTARTED and update["key_term"] is None
    update, note = _lookup(state, _Outcome(output="\n2\t1\n"))
    assert note is None and update["key_term"] == {"term": "blue-fox", "count": 2}


def test_the_lookup_runs_once_and_only_for_checked_answers() -> None:
    for state in ({"check_answers": False, "query": QUERY},
                  {"check_answers": True, "key_term_looked": True, "query": QUERY}):  # fmt: skip
        steps = key_terms.key_term_once(cast(Any, None), cast(Any, state))
        with pytest.raises(StopIteration):
            next(steps)


def test_the_empty_result_hint_names_the_term() -> None:
    # The failure it is for (dev seed 0, niah_multivalue 32k): told "e.g. grep('name')" four
    # times, the model searched the question's common words one by one and never its key.
    # (dead ends off: asked again unseen, the failed block's observation is not shown)
    seen = _run([code("print(context.count('zzz'))"), final("0"), final("0")], dead_end_retries=0)
    observation = last_text(seen[1])
    assert "e.g. grep('blue-fox') ('blue-fox' is the question's rarest word" in observation
    assert "grep('name')" not in observation
    # The hint is still told from its wording: the empty answer after it is questioned.
    assert "the empty result the hint above warned about" in last_text(seen[2])


def test_an_answer_saying_the_search_failed_names_the_term() -> None:
    seen = _run([code("print(1)"), final("no match"), final("4417")])
    assert "e.g. grep('blue-fox')" in last_text(seen[2])


def test_a_failed_search_shows_a_line_holding_the_term_first() -> None:
    # Told "e.g. grep('gentle-badger')", the model kept trying the words of its own failed
    # pattern one by one (dev seed 0, niah_multivalue 32k): the probe now shows the term's line.
    block = "import re\nprint(re.findall(r'code of blue-fox (\\d+)', context))"
    seen = _run([code(block), final("4417")], dead_end_retries=0)
    observation = last_text(seen[1])
    line = "The question's rarest word in context: 'blue-fox' 2 times, e.g. 'k blue-fox code 4417'"
    assert line in observation
    assert observation.index(line) < observation.index("Your pattern r'code of blue-fox")
    assert f"{line}, 'k blue-fox again'" in observation  # each place, up to TERM_PLACES
    assert "'blue-fox' 2 times" not in observation.split("Your pattern")[1]  # once


def test_a_term_found_once_reads_once() -> None:
    assert prompts.search_for({"term": "k-1", "count": 1}).endswith("in context: once)")
    assert prompts.search_for({"term": "k-1", "count": 1200}).endswith("1,200 times)")
