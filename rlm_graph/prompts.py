"""The text the root model reads: system prompts (full; compact for small models), the first
user message, observations, the correction and the forced answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_graph.describe import describe_payload, describe_query
from rlm_graph.state import BlockResult, KeyTerm

SYSTEM_PROMPT = """\
You answer a question about data you cannot see directly. The data is in a Python REPL as the \
variable `context`; you explore it by writing code and reading what it prints.

Reply in exactly one of these two forms:

Thought: <one or two sentences about what to do next>
```python
<code; print() what you need to see>
```

or, once you know the answer:

Thought: <why this is the answer>
Final Answer: <the answer>

Example reply:
Thought: First check the size and the start of the data.
```python
print(len(context))
print(context[:500])
```

Rules:
- Never write "Final Answer:" in the same reply as code: you have not seen its output yet.
- Each reply's code runs in the same REPL: variables persist between replies.
- Only printed output (capped at {max_output_chars:,} chars) comes back to you. Print slices, \
counts and summaries, not the whole context.
- You may also end from code with `final_answer(value)`.
- For data too long to read, split `context` into chunks, ask llm_query_batched (or \
rlm_query_batched for sub-tasks needing code) about each chunk, then combine the answers in code.

Available in the REPL:
- `context`: the data; `query`: the question text.
- `llm_query(prompt: str) -> str`: ask a language model (it sees only `prompt`; it can read \
about {sub_chars:,} chars). Use it to read or classify chunks of `context`.
- `grep(pattern, text=context, context_lines=0, max_hits=20)`: print the lines matching a regular \
expression, with their line numbers; returns them.
- `chunks(text=context, size={sub_chars})`: split text into pieces llm_query can read.
- `llm_query_batched(prompts: list[str]) -> list[str]`: many llm_query calls run concurrently \
(up to {max_concurrency} at once); answers in the same order.
- {rlm_line}
- {rlm_batched_line}
- `final_answer(value)`: finish with str(value).
- Standard library modules (re, json, collections, math, ...) can be imported.
{extra}
Limits: {limits}
"""

_RLM_CHILD = (
    "`rlm_query(query: str, context=None) -> str`: hand a sub-task to a fresh recursive agent "
    "like you, with its own REPL where `context` is what you pass (a str, list or dict; "
    "without one, the query itself); it returns only its final answer. "
    "You are at depth {depth} of {max_depth}."
)
_RLM_PLAIN = (
    "`rlm_query(query: str, context=None) -> str`: you are at the maximum depth ({depth}), so "
    "this is a plain language-model call on query + context (no REPL) — same as llm_query."
)
_RLM_BATCHED = (
    "`rlm_query_batched(items: list) -> list[str]`: several rlm_query calls run concurrently; "
    "items are queries or (query, context) pairs; answers in the same order."
)


# The compact prompt for small models. Every prompt token costs time on a CPU, but the prompt
# cache makes a fixed prefix cheap after the first call. A 1.5B model copies a worked example
# whatever the question (issue 12: a maximum-of-numbers example was applied to a key lookup),
# so there are two short examples that differ in kind: capture a value with a group, and filter
# and total with a sample printed first. A third, reading chunks with llm_query_batched, was
# copied for a plain key lookup on the dev split: 8 sub-calls of ~3k tokens, 160 s each on a
# CPU, for a task a regex answers; sub-calls are described in the function list instead. None
# is the demo's task (counting log lines by level and service) or a benchmark's data format.
COMPACT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "what is the phone number of Dana Reyes?",
        """\
Thought: Show where the name appears, then capture the number after it with a group.
```python
import re
grep("Dana Reyes")
m = re.search(r"Dana Reyes\\D{0,40}(\\d[\\d-]{5,})", context)
print(m.group(1) if m else "no match")
```""",
    ),
    (
        "how many orders were refunded?",
        """\
Thought: Keep the rows that mention a refund, print a few to check them, then take the total.
```python
rows = [r for r in context.split("\\n") if "refund" in r.lower()]
print(rows[:3])
print(len(rows))
```""",
    ),
)
COMPACT_EXAMPLE_TEXT = "\n\n".join(f"(question: {q})\n{reply}" for q, reply in COMPACT_EXAMPLES)

COMPACT_SYSTEM_PROMPT = """\
You answer a question about data in the Python REPL variable `context` (you cannot see it). \
Write code, read what it prints, then answer.

Reply with Thought: and one ```python block. When the printed output shows the answer, reply \
only with a line starting "Final Answer:" followed by the answer itself.

Example replies, each for a different question:

{examples}

Rules: variables persist between replies; only printed output comes back (at most \
{max_output_chars:,} chars), so print short results, not the data; never write Final Answer in \
a reply with code; a result of 0, [] or "no match" usually means your pattern does not fit the \
data: look at real lines with grep(...) and fix the code.

Functions:
- grep(pattern, text=context, context_lines=0, max_hits=20): print matching lines with their \
numbers; returns them.
- chunks(text=context, size={sub_chars}): split text into pieces llm_query can read.
- llm_query(prompt) -> str: ask a model about a piece of text (it reads at most ~{sub_chars:,} \
chars; slow: use it when the answer depends on what the text means, not on words a regular \
expression can find).
- llm_query_batched(prompts) -> list[str]: many llm_query calls, {max_concurrency} at once.
- {rlm_line}
- rlm_query_batched(items) -> list[str]: several rlm_query calls at once.
- final_answer(value): finish with str(value).
{extra}
Limits: {limits}
"""

_COMPACT_RLM_CHILD = (
    "rlm_query(query, context=None) -> str: a sub-agent like you with its own REPL on the "
    "context you pass (you are at depth {depth} of {max_depth})."
)
_COMPACT_RLM_PLAIN = (
    "rlm_query(query, context=None) -> str: you are at the maximum depth ({depth}), so this is "
    "a plain model call, like llm_query."
)


def system_prompt(
    *,
    depth: int,
    max_depth: int,
    max_iterations: int,
    max_output_chars: int,
    max_concurrency: int,
    remaining: Mapping[str, Any],
    compact: bool = False,
    sub_chars: int = 100_000,
    tools: Sequence[str] = (),
    answer_schema: str | None = None,
) -> str:
    """The system message for a run at ``depth``; ``compact`` gives the small-model variant.

    ``tools`` are one line per tool (:func:`rlm_graph.tools.prompt_lines`); ``answer_schema``
    the JSON schema the answer must match (:mod:`rlm_graph.answers`)."""
    limits = [f"{max_iterations} replies"]
    if remaining.get("llm_calls") is not None:
        limits.append(f"{remaining['llm_calls']} model calls left for the whole task")
    if remaining.get("total_tokens") is not None:
        limits.append(f"{remaining['total_tokens']:,} tokens left")
    if remaining.get("seconds") is not None:
        limits.append(f"{remaining['seconds']:g} s left")
    template, child, plain = (
        (COMPACT_SYSTEM_PROMPT, _COMPACT_RLM_CHILD, _COMPACT_RLM_PLAIN)
        if compact
        else (SYSTEM_PROMPT, _RLM_CHILD, _RLM_PLAIN)
    )
    # One set of fields for both templates; each uses the ones it names.
    return template.format(
        examples=COMPACT_EXAMPLE_TEXT,
        sub_chars=sub_chars,
        max_output_chars=max_output_chars,
        max_concurrency=max_concurrency,
        rlm_line=(child if depth < max_depth else plain).format(depth=depth, max_depth=max_depth),
        rlm_batched_line=_RLM_BATCHED,
        limits="; ".join(limits) + ".",
        extra=tools_section(tools) + answer_section(answer_schema),
    )


def tools_section(tools: Sequence[str]) -> str:
    """The prompt's list of the run's own tools (empty without any)."""
    if not tools:
        return ""
    lines = "".join(f"- {line}\n" for line in tools)
    return (
        "\nYour tools, also functions in the REPL (JSON-like arguments and results; a failure "
        f"raises ToolError with the tool's message):\n{lines}"
    )


def answer_section(schema: str | None) -> str:
    """What the answer must look like when the graph has an output schema (empty otherwise)."""
    if schema is None:
        return ""
    return (
        "\nThe answer must be a JSON value matching this JSON schema:\n"
        f"{schema}\nFinish from code with final_answer(obj), obj a dict/list/value matching "
        "it (a 'Final Answer:' line must hold the JSON). It is validated: if it does not "
        "match, you see the errors and can fix it.\n"
    )


def user_prompt(query: str, payload: Any) -> str:
    """The first user message: the question and the payload's metadata."""
    return (
        f"Question:\n{describe_query(query)}\n\n"
        f"The variable `context` holds:\n{describe_payload(payload)}\n\n"
        "Start by exploring `context` with code."
    )


def follow_up_prompt(query: str) -> str:
    """The first user message of a follow-up that brings no new payload."""
    return (
        f"Question:\n{describe_query(query)}\n\n"
        "The variable `context` still holds the data of the earlier questions (and `query` is "
        "this question). Use the variables you defined, or explore `context` again with code."
    )


EMPTY_OUTPUT_HINT = "(no output — use print() to see values)"


REPEATED_CODE = (
    "This was the same code as in your previous reply, so it showed you nothing new. Reply "
    "with a line starting 'Final Answer:' followed by the answer, or write different code."
)

RESTARTED = "[the REPL was restarted: variables from earlier blocks are lost]"


def observation(
    results: Sequence[BlockResult],
    *,
    rejected_final: bool,
    iteration: int,
    max_iterations: int,
    repeated: bool = False,
    term: KeyTerm | None = None,
) -> str:
    """The next user message after code ran; ``repeated``: the code was the previous reply's;
    ``term``: the question's rarest term in the data, which a hint names as the search."""
    parts: list[str] = []
    many = len(results) > 1
    for r in results:
        head = f"Observation (block {r['index'] + 1}):" if many else "Observation:"
        body = r["output"].rstrip("\n")
        if r["output_chars"] > len(r["output"]):
            body += f"\n[output truncated: {r['output_chars']:,} chars in total]"
        if r["error"]:
            body = (body + "\n" if body else "") + f"Error: {r['error'].rstrip()}"
        if r["timed_out"]:
            body += "\n[the block timed out]"
        if r["restarted"]:
            body += f"\n{RESTARTED}"
        tip = hint(r)
        if tip:
            body += f"\n{naming(tip, term)}"
        if r.get("probe"):
            body += f"\n{r['probe']}"
        parts.append(f"{head}\n{body if body.strip() else EMPTY_OUTPUT_HINT}")
    if rejected_final:
        # After a hint or an error the output shows no answer yet: do not invite one.
        troubled = any(hint(r) or r["error"] for r in results)
        parts.append(
            "Your Final Answer was not accepted (it is removed from your reply above): it was "
            "written before the code's output was seen. "
            + (
                "The output above does not show the answer yet: fix the code first."
                if troubled
                # Not "then answer": a small model took that as an order and guessed.
                else "If the output above shows the answer, reply with Final Answer alone; "
                "if it does not, write code that finds it."
            )
        )
    if repeated:
        parts.append(REPEATED_CODE)
    left = max_iterations - iteration
    parts.append(f"({left} repl{'y' if left == 1 else 'ies'} left)")
    return "\n\n".join(parts)


CORRECTION = (
    "Your reply had neither a ```python code block nor a line starting with 'Final Answer:'. "
    "Reply with Thought: and a ```python block, or with a line starting 'Final Answer:' "
    "followed by the answer itself."
)

CORRECTION_REPEATED = (
    "That was your previous reply again, still with neither code nor an answer. If an output "
    "you have seen shows the answer, reply with a line starting 'Final Answer:' followed by it; "
    "otherwise reply with Thought: and a ```python block that prints what you need next."
)

FORCED_ANSWER = (
    "You have used all your replies. Based only on what you have learned so far, give your best "
    "answer now: one line starting 'Final Answer:' followed by the answer itself, and no code."
)


def subcall_prompt(query: str, payload: Any) -> str:
    """Prompt for a plain sub-model call that stands in for ``rlm_query`` past max_depth."""
    if payload is None:
        return query
    text = payload if isinstance(payload, str) else repr(payload)
    return f"{query}\n\nContext:\n{text}"


# ---- feedback on a reply, and hints on a block's result ---------------------------------------
# Each is short and general: it names what went wrong and the next step, never a task.

# The example search of the hints below, which names the question's rarest term in the data
# where the run knows it (naming()).
EXAMPLE_SEARCH = "e.g. grep('name')"
PLACEHOLDER_ANSWER = (
    "Your Final Answer {answer!r} is a placeholder, not an answer. Find the real answer with "
    "code, then reply with Final Answer: followed by the value itself."
)
FAILED_SEARCH_ANSWER = (
    "Your Final Answer {answer!r} says the search failed, not what the answer is. Try another "
    "search: one distinctive word or name from the question, " + EXAMPLE_SEARCH + "."
)
EMPTY_RESULT_ANSWER = (
    "Your Final Answer {answer!r} is the empty result the hint above warned about: the pattern "
    "or filter probably missed. Check it against real lines with grep(...) first; if you are "
    "sure, reply with the same Final Answer again."
)
UNCONFIRMED_ANSWER = (
    # Not "if you are sure, say it again": a small model is always sure, and repeated its guess.
    "Your Final Answer {answer!r} does not appear in any output you have seen, so it is a "
    "guess. Write code that finds the answer first: {search}. (Sending the same Final Answer "
    "again ends the run with it.)"
)
ABSENT_ANSWER = (
    # Every such answer on the dev seeds followed a search that had missed (codeqa, oolong_pairs
    # 32k): the data held what was asked.
    "Your Final Answer {answer!r} says nothing was found, which usually means the search "
    "missed, not that the data lacks it. Write code that checks first: {search}, and read the "
    "lines it shows."
)
SEARCH_ANY = "grep one distinctive word or name from the question"
# A small model told only "grep one distinctive word" resent its guess (18 of 25 times on the
# dev traces) and never ran grep; told the exact call, it ran it (the one-item check: 6 of 6).
SEARCH_TERM = "grep({term!r}) ({term!r} is the question's rarest word in context: {times})"


def naming(text: str, term: KeyTerm | None) -> str:
    """``text`` with its example search (:data:`EXAMPLE_SEARCH`) made the question's rarest
    term in the data, when the run looked it up."""
    return text if term is None else text.replace(EXAMPLE_SEARCH, f"e.g. {search_for(term)}")


def search_for(term: KeyTerm | None) -> str:
    """The search the answer checks ask for: the question's rarest term in the data when the
    run looked it up (:func:`rlm_graph.key_terms.key_term_once`), else any distinctive word."""
    if term is None:
        return SEARCH_ANY
    count = term["count"]
    return SEARCH_TERM.format(term=term["term"], times="once" if count == 1 else f"{count:,} times")


ONE_ITEM_ANSWER = (
    # A small model stopped at the first match it saw, answering one of several, and sent the
    # same answer again when only told to check for others (dev seeds, vartrack 32k): the
    # message names the search to run.
    "Your Final Answer {answer!r} names one item, but the question asks for all of them. Write "
    "code that searches for more before you answer: grep({answer!r}) shows every line where "
    "that one occurs, and those lines may lead to others."
)
HINT_NO_MATCH = (
    "Hint: re.search found nothing and returned None. Search for one distinctive word or name "
    f"from the question, {EXAMPLE_SEARCH}, read how the data words it, then fix the pattern."
)
HINT_NOT_A_NUMBER = (
    "Hint: int()/float() got text that is not a number. Capture only the digits with a group, "
    r"e.g. (\d+), and convert m.group(1)."
)
HINT_SHAPE = (
    "Hint: the data does not have the shape the code assumed. Print type(x), len(x) and a few "
    "items before indexing into it."
)
HINT_UNDEFINED = (
    "Hint: a variable is only defined by code that ran without error. Define it again in this "
    "block."
)
HINT_EMPTY = (
    "Hint: that result is empty or 0, which usually means the pattern or filter does not match "
    "the data. Search for one distinctive word or name from the question, not a whole phrase "
    f"(the data may word it differently), {EXAMPLE_SEARCH}, then fix the code. If the question "
    "asks about something the text implies but never writes (a topic, a tone, a kind), no "
    "pattern finds it: give the lines to llm_query and let it judge them."
)
HINT_EMPTY_AFTER_HITS = (
    "Hint: the last result is empty, but grep found matching lines above. Read the answer from "
    "those lines, or rewrite the pattern with the exact words that stand around the value there."
)
# The first line grep() prints when it found something (rlm_graph.repl_helpers).
_GREP_FOUND = re.compile(r"^grep: [\d,]+ (?:line\(s\) match|matches of|match\(es\) near) ", re.M)
# A block's own report that its search failed ("No 'line' parameter found in ..."), and
# grep's: the same failure as an empty result (dev seed 2, codeqa 32k).
_SAYS_NOT_FOUND = re.compile(
    r"^(grep: no line|no\b.{0,80}\b(found|matche[sd]|match)\b|.{0,80}\bnot found\b)"
)
EMPTY_VALUES = {"0", "0.0", "[]", "{}", "()", "set()", "none", "no match", "''", '""'}


def hint(result: BlockResult) -> str | None:
    """A one-line hint for a common failure in this block's result, if there is one."""
    error = result["error"] or ""
    if "'NoneType' object has no attribute 'group" in error:
        return HINT_NO_MATCH
    if "invalid literal for int()" in error or "could not convert string to float" in error:
        return HINT_NOT_A_NUMBER
    last = error.strip().splitlines()[-1] if error.strip() else ""
    if last.startswith(("KeyError", "IndexError")) or "not subscriptable" in last:
        return HINT_SHAPE
    if last.startswith("NameError"):
        return HINT_UNDEFINED
    if not error and not result["timed_out"]:
        # The last value printed is usually the block's result.
        values = [v.strip().lower() for v in result["output"].splitlines() if v.strip()]
        if values and (values[-1] in EMPTY_VALUES or _SAYS_NOT_FOUND.match(values[-1])):
            # Not "search for a word": a small model that had just seen the values in grep's
            # lines gave up when told its search had missed (dev seed 1, niah_multivalue 32k).
            return HINT_EMPTY_AFTER_HITS if _GREP_FOUND.search(result["output"]) else HINT_EMPTY
    return None


def warned_empty(message: str) -> bool:
    """Whether ``message`` (an observation) has the hint for an empty result, whatever search
    it names (:func:`naming`)."""
    return any(h.split(EXAMPLE_SEARCH)[0] in message for h in (HINT_EMPTY, HINT_EMPTY_AFTER_HITS))


def found_nothing(result: BlockResult) -> bool:
    """Whether the block was a search that found nothing: its hint is the one for an empty
    result or a None match (not the one after grep found lines)."""
    return hint(result) in (HINT_EMPTY, HINT_NO_MATCH)


DIRECT_SYSTEM_PROMPT = (
    "Answer the question about the text you are given. Read all of it. Reply with one line "
    "starting 'Final Answer:' followed by the answer itself."
)


def direct_prompt(query: str, text: str) -> str:
    """The one user message of the direct strategy: the question, the whole payload, the
    question again (a small model forgets a question asked only before a long text)."""
    return f"Question: {query}\n\nText:\n{text}\n\nQuestion: {query}"
