"""Reply parsing: thought, fenced python/repl blocks, Final Answer."""

from __future__ import annotations

from rlm_graph.parsing import as_used, drop_final_answer, parse_reply


def test_thought_and_code_blocks_in_order() -> None:
    reply = "Thought: look first\n```python\nprint(1)\n```\nthen\n```repl\nx = 2\nprint(x)\n```\n"
    parsed = parse_reply(reply)
    assert parsed.thought == "look first then"
    assert parsed.code_blocks == ["print(1)", "x = 2\nprint(x)"]
    assert parsed.final_answer is None


def test_final_answer_only() -> None:
    parsed = parse_reply("Thought: I know it.\nFinal Answer: 42 apples")
    assert parsed.final_answer == "42 apples"
    assert parsed.code_blocks == []
    assert parsed.thought == "I know it."


def test_final_answer_multiline_and_markdown_label() -> None:
    parsed = parse_reply("**Final Answer:** line one\nline two")
    assert parsed.final_answer == "line one\nline two"


def test_final_answer_after_a_sentence_in_a_reply_without_code() -> None:
    parsed = parse_reply("Thought: These are the numbers. Final Answer: 808, 638")
    assert parsed.final_answer == "808, 638" and parsed.thought == "These are the numbers."
    # Not inside a sentence, and not in a reply with code (the code runs first).
    assert parse_reply("Thought: I will give the final answer: later").final_answer is None
    assert parse_reply("Done. Final Answer: 3\n```python\nprint(3)\n```").final_answer is None


def test_a_block_holding_only_a_final_answer_is_the_answer() -> None:
    parsed = parse_reply("Thought: found it.\n```python\nFinal Answer: 6050968\n```")
    assert parsed.final_answer == "6050968" and parsed.code_blocks == []
    # Code beside the label, or a second block, is code (it runs; the label errs there).
    two_lines = "```python\nx = 1\nFinal Answer: 1\n```"
    assert parse_reply(two_lines).final_answer is None
    two_blocks = "```python\nprint(1)\n```\n```python\nFinal Answer: 1\n```"
    assert parse_reply(two_blocks).final_answer is None


def test_final_answer_inside_code_is_code() -> None:
    parsed = parse_reply('```python\nprint("Final Answer: no")\n```')
    assert parsed.final_answer is None
    assert parsed.code_blocks == ['print("Final Answer: no")']


def test_code_and_final_answer_both_reported() -> None:
    parsed = parse_reply("```python\nprint(3)\n```\nFinal Answer: 3")
    assert parsed.code_blocks == ["print(3)"]
    assert parsed.final_answer == "3"


def test_untagged_fence_is_not_code() -> None:
    parsed = parse_reply("Here is data:\n```\nrm -rf /\n```")
    assert parsed.code_blocks == []


def test_unclosed_fence_runs_to_end() -> None:
    assert parse_reply("Thought: go\n```python\nprint(3)").code_blocks == ["print(3)"]


def test_hallucinated_observation_is_cut() -> None:
    parsed = parse_reply("```python\nprint(3)\n```\nObservation: 3\nFinal Answer: 3")
    assert parsed.code_blocks == ["print(3)"]
    assert parsed.final_answer is None


def test_think_tags_are_ignored() -> None:
    parsed = parse_reply("<think>```python\nprint(0)\n```</think>Final Answer: ok")
    assert parsed.code_blocks == []
    assert parsed.final_answer == "ok"


def test_neither() -> None:
    parsed = parse_reply("I am not sure what to do.")
    assert not parsed.code_blocks and parsed.final_answer is None
    assert parsed.thought == "I am not sure what to do."


def test_empty_block_is_dropped() -> None:
    assert parse_reply("```python\n\n```").code_blocks == []


def test_drop_final_answer_keeps_thought_and_code() -> None:
    reply = "Thought: count\n```python\nprint(1)\n```\nFinal Answer: 2\nbecause I guess"
    assert drop_final_answer(reply) == "Thought: count\n```python\nprint(1)\n```"
    before = "Thought: t\nFinal Answer: 5\n```python\nprint(2)\n```\n**Final answer:** 6"
    assert drop_final_answer(before) == "Thought: t\n```python\nprint(2)\n```"
    inside = '```python\nx = """\nFinal Answer: in code\n"""\n```'
    assert drop_final_answer(inside) == inside
    dropped = parse_reply(drop_final_answer(before))
    assert dropped.final_answer is None and dropped.code_blocks == ["print(2)"]


def test_as_used_keeps_a_reply_up_to_its_last_code_block() -> None:
    code_part = "Thought: two looks\n```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```"
    expected = "After running this code, we find 3 lines.\n\n(4 replies left)"
    assert as_used(code_part + "\n" + expected) == code_part
    assert as_used(code_part) == code_part
    # A reply without code is kept whole, up to an observation it invented.
    assert as_used("Thought: done\nFinal Answer: 3") == "Thought: done\nFinal Answer: 3"
    assert as_used("Thought: t\nObservation: 5\nmore") == "Thought: t"
    # An invented observation inside the fence is code, a fence without code is not code.
    inside = "```python\nprint('Observation: x')\n```"
    assert as_used(inside + "\nObservation: x") == inside
    assert as_used("```python\n\n```\nObservation: 1") == "```python\n\n```"
    assert as_used("Thought: go\n```python\nprint(3)") == "Thought: go\n```python\nprint(3)"
    # What a reasoning model thought is not the reply: an "Observation:" there cuts nothing.
    thinking = "<think>\nmaybe\nObservation: 3\n</think>\n"
    assert as_used(thinking + code_part + "\nso 3") == code_part
