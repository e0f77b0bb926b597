"""The loop's aids for small models (issue 12): placeholder answers refused, a guessed answer
questioned once, hints on common failures, grep/chunks in the REPL, the real window of
llm_query in the prompt, and the direct strategy. Scripted models, the real sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from rlm_graph import build_graph, probes, prompts, updates
from rlm_graph.model_profile import SMALL_MODEL_TAG, readable_chars, window_tokens
from rlm_graph.state import BlockResult
from tests.fakes import FakeChatModel, code, final, is_subcall, last_text, text_of, turn


def _run(
    replies: list[str],
    tags: list[str] | None = None,
    query: str = "What is the code of key blue-fox?",
    context: str = "k blue-fox code 4417\n" * 3,
    **settings: Any,
) -> tuple[Any, Any]:
    seen: list[list[BaseMessage]] = []

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "yes" if "harbour" in text_of(messages[-1]) else "no"
        seen.append(list(messages))
        return replies[min(turn(messages), len(replies) - 1)]

    model = FakeChatModel(respond=respond, tags=tags)
    out = build_graph(model=model, **settings).invoke({"query": query, "context": context})
    return out, seen


@pytest.mark.parametrize("placeholder", ["<answer>", "<the answer>", "...", "[value]"])
def test_a_placeholder_answer_is_refused_with_the_reason(placeholder: str) -> None:
    out, seen = _run([final(placeholder), final("4417")])
    assert out["answer"] == "4417" and out["iterations"] == 2
    assert "is a placeholder" in last_text(seen[1])


def test_a_real_answer_is_not_taken_for_a_placeholder() -> None:
    out, _ = _run([final("<b>bold</b> answer")])
    assert out["answer"] == "<b>bold</b> answer" and out["iterations"] == 1


def test_a_small_models_guess_is_questioned_once() -> None:
    # The model answers before any output showed the number, then insists: accepted.
    out, seen = _run([final("12345"), final("12345")], tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "12345" and out["iterations"] == 2
    assert "does not appear in any output" in last_text(seen[1])


def test_an_answer_the_output_showed_is_taken_at_once() -> None:
    out, _ = _run([code("print(context.split()[3])"), final("4417")], tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "4417" and out["iterations"] == 2


LIST_QUESTION = "Find all codes of key blue-fox. Answer with the codes, separated by commas."
TWO_CODES = "k blue-fox code 4417\nk red-owl code 1200\nk blue-fox code 5521\n"


def test_one_item_for_a_list_question_is_questioned_once() -> None:
    replies = [code("grep('blue-fox')"), final("4417"), final("4417, 5521")]
    out, seen = _run(replies, [SMALL_MODEL_TAG], LIST_QUESTION, TWO_CODES)
    assert out["answer"] == "4417, 5521" and out["iterations"] == 3
    assert "names one item, but the question asks for all of them" in last_text(seen[2])
    assert "grep('4417')" in last_text(seen[2])


def test_one_item_sent_again_is_taken() -> None:
    replies = [code("grep('blue-fox')"), final("4417"), final("4417")]
    out, _ = _run(replies, [SMALL_MODEL_TAG], LIST_QUESTION, TWO_CODES)
    assert out["answer"] == "4417" and out["iterations"] == 3


def test_several_items_or_a_one_value_question_are_taken_at_once() -> None:
    replies = [code("grep('blue-fox')"), final("4417, 5521")]
    out, _ = _run(replies, [SMALL_MODEL_TAG], LIST_QUESTION, TWO_CODES)
    assert out["answer"] == "4417, 5521" and out["iterations"] == 2
    out, _ = _run([code("grep('blue-fox')"), final("4417")], tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "4417" and out["iterations"] == 2


@pytest.mark.parametrize(
    ("query", "several"),
    [
        ("What are all the numbers for x? Answer with every number, separated by commas.", True),
        ("Find all variables that are assigned the value 5.", True),
        ("List every pair of users who share a date.", True),
        ("Which classes subclass B? Give a comma-separated list.", True),
        ("Which topic is the most common among all records?", False),
        ("How many records have the topic x? Answer with a number.", False),
        ("What is the number for x?", False),
    ],
)
def test_which_questions_ask_for_a_list(query: str, several: bool) -> None:
    assert updates.asks_for_several(query) is several


@pytest.mark.parametrize(
    ("answer", "n"),
    [("VKDIZ", 1), ("A, B", 2), ("[3, 4]", 2), ("a and b", 2), ("x; y\nz", 3), ("'X'.", 1)],
)
def test_the_items_of_an_answer(answer: str, n: int) -> None:
    assert len(updates.answer_items(answer)) == n


def test_a_name_in_backticks_that_was_shown_is_not_a_guess() -> None:
    # Seen on code questions (seed 11 of no split; test seed 102): `PACKAGE_DIR` after an
    # output showing PACKAGE_DIR was questioned as a guess, and the model then changed it.
    replies = [code("print('Path = PACKAGE_DIR) -> str:')"), final("`PACKAGE_DIR`")]
    out, _ = _run(replies, [SMALL_MODEL_TAG], "What is the default of relative_to?")
    assert out["answer"] == "`PACKAGE_DIR`" and out["iterations"] == 2


def test_a_list_whose_items_were_each_shown_is_not_a_guess() -> None:
    names = "k ALPHA = 7\nk BETA = ALPHA\n"
    replies = [code("grep('k')"), final("ALPHA, BETA")]
    out, _ = _run(replies, [SMALL_MODEL_TAG], LIST_QUESTION, names)
    assert out["answer"] == "ALPHA, BETA" and out["iterations"] == 2
    replies = [code("grep('k')"), final("ALPHA, GAMMA"), final("ALPHA, BETA")]
    out, seen = _run(replies, [SMALL_MODEL_TAG], LIST_QUESTION, names)
    assert out["answer"] == "ALPHA, BETA" and "is a guess" in last_text(seen[2])


def test_an_answer_saying_nothing_was_found_is_questioned_once() -> None:
    replies = [final("No code for blue-fox was found in the text."), final("4417")]
    out, seen = _run(replies, tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "4417" and out["iterations"] == 2
    assert "says nothing was found" in last_text(seen[1])
    again = [final("There is no code for blue-fox."), final("There is no code for blue-fox.")]
    out, _ = _run(again, tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "There is no code for blue-fox." and out["iterations"] == 2


@pytest.mark.parametrize(
    ("answer", "absent"),
    [
        ("No classes in these files have Codec as a direct base class.", True),
        ("No pairs of user ids found with the topic 'account'.", True),
        ("The key is not mentioned in the text.", True),
        ("The log does not contain such lines", True),
        ("None", False),
        ("No", False),
        ("nothing", False),
        ("The code is 4417", False),
        ("Nobody knows the code", False),
    ],
)
def test_which_answers_say_nothing_was_found(answer: str, absent: bool) -> None:
    assert updates.says_absent(answer) is absent


def test_other_models_are_not_questioned() -> None:
    out, _ = _run([final("12345")])
    assert out["answer"] == "12345" and out["iterations"] == 1


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ("import re\nprint(re.search(r'zzz(\\d+)', context).group(1))", "re.search found nothing"),
        ("print(int('code'))", "is not a number"),
        ("print({}['key'])", "does not have the shape"),
        ("print(undefined_name)", "only defined by code that ran"),
        ("print(len([l for l in context.split() if 'zzz' in l]))", "result is empty or 0"),
        ("grep('zzz')", "result is empty or 0"),
        ("print(\"No 'size' parameter found in the function.\")", "result is empty or 0"),
        ("print('Key not found.')", "result is empty or 0"),
        ("grep('blue')\nprint('no match')", "grep found matching lines above"),
    ],
)
def test_common_failures_get_a_hint(block: str, needle: str) -> None:
    _, seen = _run([code(block), final("4417")])
    assert needle in last_text(seen[1])


def test_a_good_result_gets_no_hint() -> None:
    _, seen = _run([code("print(context.count('4417'))"), final("3")])
    observation = last_text(seen[1])
    assert "3" in observation and "Hint:" not in observation


def test_grep_and_chunks_are_in_the_repl() -> None:
    _, seen = _run(
        [
            code("hits = grep('blue', context_lines=0)\nprint(len(hits), len(chunks(size=30)))"),
            final("done"),
        ]
    )
    observation = last_text(seen[1])
    # 3 lines of 21 chars: 30-char chunks cut at line breaks hold one line each
    assert "1: k blue-fox code 4417" in observation and "3 3" in observation


def test_chunks_default_to_what_llm_query_can_read() -> None:
    # window_tokens=500 → llm_query reads about 1,000 chars: a 2,205-char text is 3 chunks.
    def reply(size_check: str) -> list[str]:
        return [code(size_check), final("done")]

    _, seen = _run(reply("print(len(chunks(context * 35)))"), window_tokens=500, strategy="rlm")
    assert last_text(seen[1]).splitlines()[1] == "3", last_text(seen[1])
    assert "about 1,000 chars" in text_of(seen[0][0])


def test_the_prompt_states_the_sub_models_real_window() -> None:
    class Windowed(FakeChatModel):
        pass

    small = Windowed(respond=lambda m: final("x"), profile={"max_input_tokens": 8192})
    assert window_tokens(small) == 8192 and readable_chars(8192) == 16_384
    seen: list[Any] = []

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        return code("print(1)") if turn(messages) == 0 else final("1")

    root = FakeChatModel(respond=respond)
    build_graph(model=root, sub_model=small, strategy="rlm").invoke({"query": "q"})
    assert "about 16,384 chars" in text_of(seen[0][0])
    # unknown window: the old generous figure
    build_graph(model=root, strategy="rlm").invoke({"query": "q"})
    assert "about 100,000 chars" in text_of(seen[-1][0])


def test_direct_strategy_is_one_call_with_the_whole_payload() -> None:
    seen: list[Any] = []

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        return final("4417")

    model = FakeChatModel(respond=respond)
    payload = "k blue-fox code 4417\n" * 3
    out = build_graph(model=model, strategy="direct").invoke({"query": "q?", "context": payload})
    assert out["answer"] == "4417" and out["usage"]["llm_calls"] == 1
    assert payload in text_of(seen[0][-1]) and "REPL" not in text_of(seen[0][0])


def test_auto_strategy_goes_direct_only_when_the_payload_fits_the_window() -> None:
    def strategy_of(chars: int, **settings: Any) -> str:
        graph = build_graph(model=FakeChatModel(respond=lambda m: final("x")), **settings)
        events = [
            e
            for _, e in graph.stream(
                {"query": "q", "context": "y" * chars}, stream_mode="custom", subgraphs=True
            )
        ]
        return str(events[0]["strategy"])

    assert strategy_of(1_000, window_tokens=1_000) == "direct"  # a third of 3,000 chars
    assert strategy_of(1_001, window_tokens=1_000) == "rlm"
    assert strategy_of(1_000) == "rlm"  # unknown window: never direct
    assert strategy_of(1_000, window_tokens=1_000, strategy="rlm") == "rlm"


def test_the_compact_prompt_never_shows_a_placeholder_to_copy() -> None:
    text = prompts.system_prompt(
        depth=0, max_depth=1, max_iterations=3, max_output_chars=2000, max_concurrency=2,
        remaining={}, compact=True,
    )  # fmt: skip
    assert "<answer>" not in text and "Final Answer:" in text
    # nor do the messages a small model reads mid-run (it copied "Final Answer: <answer>")
    for message in (prompts.REPEATED_CODE, prompts.CORRECTION, prompts.FORCED_ANSWER):
        assert "<" not in message and "Final Answer:" in message


def test_grep_in_a_text_without_line_breaks_shows_each_match() -> None:
    from rlm_graph.repl_helpers import prelude

    text = (
        "filler " * 300 + "key alpha is: 111. " + "filler " * 80 + "key beta is: 222. " + "x" * 500
    )
    namespace: dict[str, Any] = {"context": text}
    exec(prelude(100), namespace)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace["grep"]("key")
    head, *shown = out.getvalue().splitlines()
    assert head == "grep: 2 matches of 'key' in 1 line(s)"  # matches, not the one line
    assert len(shown) == 2 and "key alpha is: 111" in shown[0] and "key beta is: 222" in shown[1]
    assert all(len(line) < 400 for line in shown)


def test_grep_says_how_many_lines_match_before_it_shows_them() -> None:
    # A small model answered a "how many" question with a line number grep showed, when the
    # count came only after the lines (dev seed 1, oolong_agg 32k).
    from rlm_graph.repl_helpers import prelude

    text = "\n".join(f"user: {10 + i % 7} || note {i}" for i in range(100))
    namespace: dict[str, Any] = {"context": text}
    exec(prelude(100), namespace)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        hits = namespace["grep"]("user: 12 ", max_hits=5)
    lines = out.getvalue().splitlines()
    assert len(hits) == 14
    assert lines[0] == "grep: 14 line(s) match 'user: 12 '; the first 5 are shown"
    assert lines[1].startswith("3: user: 12 ") and len(lines) == 7
    assert lines[-1] == "grep: 14 in all; the first 5 are shown above"
    assert "not shown" not in out.getvalue()  # no count of the lines left out (9 here)


@pytest.mark.parametrize("failed", ["No match", "not found", "Unknown."])
def test_an_answer_saying_the_search_failed_is_refused(failed: str) -> None:
    out, seen = _run([final(failed), final("4417")])
    assert out["answer"] == "4417" and out["iterations"] == 2
    assert "says the search failed" in last_text(seen[1])


def test_a_small_models_empty_result_answer_is_questioned_once() -> None:
    # the count is 0 because the filter missed; the hint said so; the model answers 0 anyway
    # (with dead ends retried, a scripted model would re-send the same block: see test_dead_ends)
    replies = [code("print(context.count('zzz'))"), final("0"), final("0")]
    out, seen = _run(replies, tags=[SMALL_MODEL_TAG], dead_end_retries=0)
    assert out["answer"] == "0" and out["iterations"] == 3
    assert "the empty result the hint above warned about" in last_text(seen[2])


def test_an_early_answer_after_a_failed_block_is_not_invited() -> None:
    reply = code("print(context.count('zzz'))") + "\nFinal Answer: 0"
    _, seen = _run([reply, final("3")])
    observation = last_text(seen[1])
    assert "does not show the answer yet" in observation
    assert "reply with Final Answer alone" not in observation
    _, seen = _run([code("print(context.count('4417'))") + "\nFinal Answer: 3", final("3")])
    assert "If the output above shows the answer, reply with Final Answer alone" in last_text(
        seen[1]
    )


def test_grep_left_as_the_last_expression_does_not_echo_whole_lines() -> None:
    # One long line: grep shows the part around the match; the REPL echoes its return value,
    # which must not repeat the whole 30k-char line that was just shown in part.
    seen: list[list[BaseMessage]] = []
    replies = [code("grep('blue-fox')"), final("4417")]

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(list(messages))
        return replies[min(turn(messages), 1)]

    text = "filler words " * 2500 + "k blue-fox code 4417 " + "more filler " * 100
    build_graph(model=FakeChatModel(respond=respond), strategy="rlm").invoke(
        {"query": "What is the code of key blue-fox?", "context": text}
    )
    observation = last_text(seen[1])
    assert "k blue-fox code 4417" in observation
    assert "omitted" not in observation and len(observation) < 1500, observation[-500:]
    assert f"[{len(text):,} chars]" in observation  # the echo says how long the line is


def test_grep_still_returns_the_full_lines() -> None:
    from rlm_graph.repl_helpers import prelude

    namespace: dict[str, Any] = {"context": "a " * 500 + "key 1\nb key 2\nc"}
    exec(prelude(100), namespace)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        hits = namespace["grep"]("key")
    assert hits == ["a " * 500 + "key 1", "b key 2"] and isinstance(hits, list)
    assert len(repr(hits)) < 200 and "'b key 2'" in repr(hits)


def test_an_empty_final_answer_line_after_code_is_cut_from_the_history() -> None:
    # A small model copied its own empty "Final Answer:" line into every later reply.
    _, seen = _run([code("print(len(context))") + "\n\nFinal Answer:", final("4417")])
    history = [text_of(m) for m in seen[1]]
    assert "print(len(context))" in history[-2] and "Final Answer" not in history[-2]


def test_an_empty_result_after_grep_found_lines_points_at_those_lines() -> None:
    # grep showed the values; the model's own regex missed them: the hint must not say the
    # search failed (a 1.5B model then gave up, dev seed 1, niah_multivalue 32k).
    block = "grep('blue-fox')\nimport re\nprint(re.findall(r'blue-fox\\s+(\\d+)', context))"
    _, seen = _run([code(block), final("4417")])
    observation = last_text(seen[1])
    assert "grep found matching lines above" in observation
    assert "Search for one distinctive word" not in observation
    _, seen = _run([code("grep('zzz')\nprint([])"), final("4417")])
    assert "Search for one distinctive word" in last_text(seen[1])


def test_an_empty_answer_after_that_hint_is_questioned_once() -> None:
    block = "grep('blue-fox')\nprint(0)"
    out, seen = _run([code(block), final("0"), final("0")], tags=[SMALL_MODEL_TAG])
    assert out["answer"] == "0" and out["iterations"] == 3
    assert "the empty result the hint above warned about" in last_text(seen[2])


def test_a_code_less_reply_sent_twice_gets_a_firmer_correction() -> None:
    prose = "Thought: the text does not contain it."
    out, seen = _run([prose, prose, final("4417")])
    assert out["answer"] == "4417"
    assert last_text(seen[1]) == prompts.CORRECTION
    assert last_text(seen[2]) == prompts.CORRECTION_REPEATED
    _, seen = _run([prose, "Thought: something else.", final("4417")])
    assert last_text(seen[2]) == prompts.CORRECTION


def test_a_search_that_found_nothing_shows_where_its_words_occur() -> None:
    # The demo's failure (dev seeds 202-204): a pattern built from a format line with
    # placeholders printed 0, and the model re-ran it. The probe shows which words are real.
    block = "import re\nprint(len(re.findall(r'<key> blue-fox \\w+ zzz', context)))"
    _, seen = _run([code(block), code("print('_rlm_probe' in globals())"), final("4417")])
    observation = last_text(seen[1])
    assert "'key' 0 times" in observation and "'zzz' 0 times" in observation
    assert "'blue' 3 times, e.g. 'k blue-fox code 4417'" in observation
    assert "\\w" not in observation.split("occur in context:")[1]  # escapes are not words
    assert "False" in last_text(seen[2])  # the probe leaves no name behind


@pytest.mark.parametrize(
    "block",
    [
        "print(context.count('4417'))",  # a result
        "grep('blue-fox')\nimport re\nprint(re.findall(r'blue-fox\\s+(\\d+)', context))",
        "print(len([]))",  # nothing searched for: no words to look up
    ],
)
def test_no_probe_without_a_failed_search_with_words(block: str) -> None:
    _, seen = _run([code(block), final("4417")])
    assert "occur in context" not in last_text(seen[1])


def test_the_probe_finds_words_in_code_order_without_regex_escapes() -> None:
    code_ = "import re\nn = re.findall(r'\\bERROR\\s+\\[payment\\]', context)\nprint(n, 'ERROR')"
    assert probes.words_of(code_) == ["ERROR", "payment"]
    assert probes.words_of("print('a1 b2 c3 d4 e5 f6 g7 h8'.split(' '))") == []  # under 3 chars
    many = "x = '" + " ".join(f"word{i}" for i in range(9)) + "'"
    assert probes.words_of(many) == [f"word{i}" for i in range(probes.MAX_WORDS)]
    assert probes.words_of("print('unclosed") == [] and probes.probe_code("x = 1") is None


def test_the_probe_shows_the_part_of_a_long_line_around_the_word(
    capsys: pytest.CaptureFixture[str],
) -> None:
    probe = probes.probe_code("print('needle')")
    assert probe is not None
    exec(probe, {"context": "x" * 5000 + " needle " + "y" * 5000})  # the sandbox runs it so
    shown = capsys.readouterr().out
    assert "'needle' once, e.g. 'xxx" in shown and "needle yyy" in shown
    assert len(shown) < 2 * probes.LINE_CHARS


def test_grep_and_chunks_take_context_as_another_name_for_text() -> None:
    # A 1.5B model wrote grep("ERROR payment", context=context) and got a TypeError (demo,
    # dev seed 201).
    block = (
        "grep('blue', context='a blue sky\\nno')\nprint(len(chunks(context='abc\\n' * 9, size=8)))"
    )
    _, seen = _run([code(block), final("4417")])
    observation = last_text(seen[1])
    assert "1: a blue sky" in observation and "\n5" in observation


def test_grep_falls_back_to_plain_text_when_the_pattern_matches_nothing() -> None:
    log = "t1 ERROR [payment] a\nt2 ERROR [auth] b\nt3 INFO [payment] c"
    block = (
        f"text = {log!r}\n"
        "print(len(grep('ERROR [payment]', text)))\n"  # a character class as a regex
        "print(len(grep('ERROR .[ap]', text)))\n"  # a class that matches: used as a regex
        "print(len(grep('ERROR [x]', text)))"  # neither
    )
    _, seen = _run([code(block), final("4417")])
    observation = last_text(seen[1])
    assert "'ERROR [payment]' matches no line as a regular expression; as plain text:" in (
        observation
    )
    assert "1: t1 ERROR [payment] a" in observation
    assert observation.count("as plain text") == 1
    assert "grep: 2 line(s) match 'ERROR .[ap]'" in observation
    assert "grep: no line matches 'ERROR [x]'" in observation


def test_no_probe_after_a_block_that_gave_its_final_answer() -> None:
    # No observation follows a final answer, so a probe there would run for no one to read.
    empty = BlockResult(
        index=0, output="0\n", output_chars=2, error=None, final_answer=None,
        timed_out=False, restarted=False, seconds=0.0,
    )  # fmt: skip
    assert probes.wants_probe(empty)
    assert not probes.wants_probe({**empty, "final_answer": "0"})


def _grep_output(text: str, pattern: str) -> tuple[str, list[str]]:
    import contextlib
    import io

    from rlm_graph.repl_helpers import prelude

    namespace: dict[str, Any] = {"context": text}
    exec(prelude(100), namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        hits = namespace["grep"](pattern)
    return out.getvalue(), list(hits)


def test_grep_of_a_phrase_found_nowhere_shows_the_lines_holding_its_words() -> None:
    # A 1.5B model greps the question's wording ("ERROR service payment"); told only that no
    # line matched, it re-sent the same search (the demo, dev seeds 202-204).
    log = "t1 ERROR [payment] a\nt2 ERROR [auth] b\nt3 INFO [payment] c\nt4 ERROR [payment] d"
    shown, hits = _grep_output(log, "ERROR service payment")
    assert shown.splitlines() == [
        "grep: no line matches 'ERROR service payment'",
        "grep: 'service' is in no line",
        "grep: 2 line(s) match all of 'ERROR', 'payment'",
        "t1 ERROR [payment] a",
        "t4 ERROR [payment] d",
    ]
    assert hits == ["t1 ERROR [payment] a", "t4 ERROR [payment] d"]
    # grep found lines: an empty result after it points at them, not at another search
    result = BlockResult(
        index=0, output=shown + "0\n", output_chars=0, error=None, final_answer=None,
        timed_out=False, restarted=False, seconds=0.0,
    )  # fmt: skip
    assert prompts.hint(result) == prompts.HINT_EMPTY_AFTER_HITS
    # fewer than two of its words anywhere: nothing to show
    shown, hits = _grep_output(log, "ERROR timestamp")
    assert shown == "grep: no line matches 'ERROR timestamp'\n" and hits == []


def test_grep_of_a_phrase_in_one_long_line_shows_its_words_near_each_other() -> None:
    # Prose with no line breaks is one line holding every common word: only the words near
    # the rarest one count ("special magic number for k" vs "...magic numbers for k is: 7").
    filler = "the special offer of a magic show, number nine. " * 40
    text = (
        filler + "One of the special magic numbers for gold-fern is: 4417. " + filler
        + "One of the special magic numbers for red-oak is: 9906. " + filler
    )  # fmt: skip
    shown, hits = _grep_output(text, "special magic number for gold-fern")
    lines = shown.splitlines()
    assert lines[1] == (
        "grep: 1 match(es) near each other of all of 'special', 'magic', 'number', 'gold-fern'"
    )
    assert len(lines) == 3 and "gold-fern is: 4417" in lines[2] and "red-oak" not in lines[2]
    assert len(hits) == 1
    result = BlockResult(
        index=0, output=shown + "no match\n", output_chars=0, error=None, final_answer=None,
        timed_out=False, restarted=False, seconds=0.0,
    )  # fmt: skip
    assert prompts.hint(result) == prompts.HINT_EMPTY_AFTER_HITS
    # regex escapes are not words of the phrase (\bERROR\b is the word ERROR)
    shown, _ = _grep_output(text, r"\bspecial\b magic number for \bgold-fern\b")
    assert "1 match(es) near each other of all of 'special', 'magic'" in shown
