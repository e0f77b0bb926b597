"""Smoke tier of the long-context suite (benchmarks/longctx): generators, scorers, runner.

Gold answers are recomputed here by other means than the generators use (regexes over the
text, code objects instead of ast, phrase lookup), so a generator with a wrong gold fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import combinations
from pathlib import Path
from types import CodeType
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from benchmarks.longctx.cli import main, parser
from benchmarks.longctx.codeqa import HEADER, Facts
from benchmarks.longctx.families import FAMILIES, make_task
from benchmarks.longctx.records import PHRASES
from benchmarks.longctx.rlms_system import rlms_request
from benchmarks.longctx.runner import read_rows, run_suite
from benchmarks.longctx.scoring import items, numbers, pairs_in, score
from benchmarks.longctx.summary import markdown, plot
from benchmarks.longctx.systems import Settings, bare_prompt
from benchmarks.longctx.tasks import DEV_SEEDS, TEST_SEEDS, Task, fingerprint, parse_size, split_of
from tests.fakes import FakeChatModel, code, final, is_subcall, last_text, question, text_of, turn

ROOT = Path(__file__).resolve().parents[1]
NEEDLE = re.compile(r"One of the special magic numbers for ([\w-]+) is: (\d+)\.")


# ---- generators: determinism, size, fingerprint ----------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generator_is_deterministic_and_sized(family: str) -> None:
    a, b = make_task(family, 20_000, 3), make_task(family, 20_000, 3)
    assert (a.query, a.context, a.gold) == (b.query, b.context, b.gold)
    assert a.fingerprint == b.fingerprint == fingerprint(a.query, a.context)
    assert 0.9 * 20_000 <= len(a.context) <= 20_000
    other = make_task(family, 20_000, 4)
    assert other.fingerprint != a.fingerprint


def test_generation_does_not_depend_on_hash_seed() -> None:
    script = (
        "from benchmarks.longctx.families import FAMILIES, make_task\n"
        "print([make_task(f, 9000, 1).fingerprint for f in FAMILIES])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2)
    }
    assert len(outs) == 1
    assert json.loads(outs.pop().replace("'", '"')) == [
        make_task(f, 9000, 1).fingerprint for f in FAMILIES
    ]


def test_splits_are_declared_and_disjoint() -> None:
    assert len(DEV_SEEDS) >= 5 and len(TEST_SEEDS) >= 5
    assert not set(DEV_SEEDS) & set(TEST_SEEDS)
    assert make_task("niah_single", 8000, DEV_SEEDS[0]).split == "dev"
    assert make_task("niah_single", 8000, TEST_SEEDS[0]).split == "test"
    assert split_of(7) == "adhoc"


def test_parse_size() -> None:
    assert [parse_size(s) for s in ("8k", "128K", "2M", "500", "1.5k")] == [
        8000, 128_000, 2_000_000, 500, 1500,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="bad size"):
        parse_size("8 gigs")
    with pytest.raises(ValueError, match="too small"):
        make_task("niah_single", 7999, 0)


# ---- generators: gold recomputed independently -----------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_niah_single_gold(seed: int) -> None:
    task = make_task("niah_single", 30_000, seed)
    needles = NEEDLE.findall(task.context)
    assert len(needles) == 1
    key, value = needles[0]
    assert key in task.query and value == task.gold
    where = task.context.index("One of the special") / len(task.context)
    assert abs(where - task.meta["depth"]) < 0.02


def test_niah_depth_varies_with_the_seed() -> None:
    depths = {make_task("niah_single", 8000, seed).meta["depth"] for seed in range(12)}
    assert len(depths) >= 4 and min(depths) < 0.3 and max(depths) > 0.7


def test_niah_multikey_gold_and_distractors() -> None:
    task = make_task("niah_multikey", 30_000, 1)
    found = dict(NEEDLE.findall(task.context))
    assert len(found) == task.meta["distractors"] + 1
    key = re.search(r"magic number for ([\w-]+)", task.query).group(1)  # type: ignore[union-attr]
    assert found[key] == task.gold


def test_niah_multivalue_gold() -> None:
    task = make_task("niah_multivalue", 30_000, 2)
    key = re.search(r"magic numbers for ([\w-]+)", task.query).group(1)  # type: ignore[union-attr]
    pairs = NEEDLE.findall(task.context)
    assert sorted(v for k, v in pairs if k == key) == task.gold
    assert len(task.gold) >= 2 and any(k != key for k, _ in pairs)


@pytest.mark.parametrize("seed", [0, 3])
def test_vartrack_gold(seed: int) -> None:
    task = make_task("vartrack", 30_000, seed)
    value = re.search(r"assigned the value (\d+)", task.query).group(1)  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for name, rhs in re.findall(r"VAR ([A-Z]+) = (VAR [A-Z]+|\d+)\.", task.context):
        env[name] = env[rhs[4:]] if rhs.startswith("VAR ") else rhs
    assert sorted(n for n, v in env.items() if v == value) == task.gold
    assert len(set(env.values())) == 3


def _labelled(context: str) -> list[tuple[int, str, str]]:
    rows = []
    for line in context.splitlines():
        m = re.fullmatch(r"user: (\d+) \|\| date: ([\d-]+) \|\| text: (.*)", line)
        assert m, line
        labels = [k for k, ps in PHRASES.items() if any(m.group(3).startswith(p) for p in ps)]
        assert len(labels) == 1, line
        rows.append((int(m.group(1)), m.group(2), labels[0]))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 100])
def test_oolong_agg_gold(seed: int) -> None:
    task = make_task("oolong_agg", 40_000, seed)
    rows = _labelled(task.context)
    assert not any(label in task.context for label in PHRASES)  # the label is never written
    q = task.query.splitlines()[-1]
    label = re.search(r"topic '(\w+)'", q)
    qtype = task.meta["question_type"]
    if qtype == "count_label":
        assert task.gold == sum(r[2] == label.group(1) for r in rows)  # type: ignore[union-attr]
    elif qtype == "count_user":
        user = int(re.search(r"user (\d+)", q).group(1))  # type: ignore[union-attr]
        assert task.gold == sum(r[0] == user for r in rows)
    elif qtype == "count_label_dates":
        lo, hi = re.findall(r"\d{4}-\d\d-\d\d", q)
        want = label.group(1)  # type: ignore[union-attr]
        assert task.gold == sum(r[2] == want and lo <= r[1] <= hi for r in rows)
    else:
        counts = Counter(r[2] for r in rows)
        assert task.gold == counts.most_common(1)[0][0]
    assert task.gold not in (0, "0")


def test_oolong_agg_cycles_question_types() -> None:
    tasks = [make_task("oolong_agg", 8000, s) for s in range(12)]
    assert len({t.meta["question_type"] for t in tasks}) == 4
    assert all(t.gold != 0 for t in tasks)  # answering 0 is never right by luck


@pytest.mark.parametrize("seed", [0, 101])
def test_oolong_pairs_gold(seed: int) -> None:
    task = make_task("oolong_pairs", 40_000, seed)
    label = re.search(r"topic '(\w+)'", task.query).group(1)  # type: ignore[union-attr]
    holders = sorted({u for u, _, lab in _labelled(task.context) if lab == label})
    assert task.gold == [list(p) for p in combinations(holders, 2)]
    assert len(task.gold) >= 3


def _sections(context: str) -> dict[str, str]:
    parts = re.split(r"^### FILE: (.+)\n", context, flags=re.MULTILINE)
    assert parts[0] == ""
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _code_objects(code_obj: CodeType) -> Iterator[CodeType]:
    for const in code_obj.co_consts:
        if isinstance(const, CodeType):
            yield const
            yield from _code_objects(const)


def _params(co: CodeType) -> tuple[str, ...]:
    n = co.co_argcount + co.co_kwonlyargcount
    n += bool(co.co_flags & 0x04) + bool(co.co_flags & 0x08)  # *args, **kwargs
    return co.co_varnames[:n]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 100])
def test_codeqa_gold(seed: int) -> None:
    task = make_task("codeqa", 60_000, seed)
    files = _sections(task.context)
    assert len(files) == task.meta["files"] and list(files) == sorted(files)
    assert task.meta["version"]
    q = task.query
    qtype = task.meta["question_type"]
    if qtype == "class_file":
        name = re.search(r"defines the class (\w+)", q).group(1)  # type: ignore[union-attr]
        pat = re.compile(rf"^\s*class {name}\b", re.MULTILINE)
        assert [p for p, text in files.items() if pat.search(text)] == [task.gold]
    elif qtype == "param_count":
        param = re.search(r"parameter named '(\w+)'", q).group(1)  # type: ignore[union-attr]
        count = 0
        for path, text in files.items():
            for co in _code_objects(compile(text, path, "exec")):
                if not co.co_name.startswith("<") and param in _params(co):
                    count += 1
        assert task.gold == count
    elif qtype == "default":
        m = re.search(r"file (\S+), .*parameter '(\w+)' of the function (\w+)", q)
        path, param, fn = m.groups()  # type: ignore[union-attr]
        body = files[path]
        start = re.search(rf"def {fn}\(", body).start()  # type: ignore[union-attr]
        signature = body[start : body.index(":\n", start)]
        wanted = rf"\b{param}\s*(?::[^=,]+)?=\s*{re.escape(task.gold)}"
        assert re.search(wanted, signature, re.DOTALL), (signature, task.gold)
    else:
        base = re.search(r"have (\w+) as a direct base", q).group(1)  # type: ignore[union-attr]
        for name in task.gold:
            assert re.search(rf"class {name}\((?:[^)]|\n)*\b{base}\b", task.context), name
        one_line = re.findall(r"^\s*class (\w+)\(([^)\n]*)\):", task.context, re.MULTILINE)
        direct = {n for n, bases in one_line if base in re.findall(r"\w+", bases)}
        assert direct <= set(task.gold)


SAMPLE = """
class Base: ...
class A(Base):
    def f(self, x, /, y=1, *args, z: int = 3, **kw): ...
class B(mod.Base, Generic[T]):
    async def g(self, *, x="utf-8"): ...
def h(x=None): ...
def k(*x): ...
"""


def test_codeqa_facts_on_known_source() -> None:
    import random

    facts = Facts.collect({"pkg/a.py": SAMPLE})
    assert facts.class_files["A"] == ["pkg/a.py"]
    assert sorted(facts.bases["Base"]) == ["A", "B"] and facts.bases["Generic"] == ["B"]
    # x is a parameter of f (positional-only), g (keyword-only), h, and k (*x): 4 functions;
    # it is the only name besides self in two or more signatures.
    made = facts.question("param_count", random.Random(1))
    assert made is not None and "named 'x'" in made[0] and made[1:] == (4, "number")
    rng = random.Random(0)
    defaults = set()
    for _ in range(40):
        made = facts.question("default", rng)
        assert made is not None
        m = re.search(r"parameter '(\w+)' of the function (\w+)", made[0])
        assert m is not None
        defaults.add((m.groups(), made[1]))
    assert defaults == {
        (("y", "f"), "1"), (("z", "f"), "3"), (("x", "g"), "'utf-8'"), (("x", "h"), "None"),
    }  # fmt: skip
    made = facts.question("subclasses", rng)
    assert made is not None and made[1:] == (["A", "B"], "set")


def test_codeqa_header_format() -> None:
    task = make_task("codeqa", 20_000, 0)
    assert task.context.startswith(HEADER.format(path=next(iter(_sections(task.context)))))


# ---- scorers --------------------------------------------------------------------------------


def test_numbers_normalisation() -> None:
    assert numbers("about 1,234 records and 5_000 more, 12345,23456") == [
        1234, 5000, 12345, 23456,
    ]  # fmt: skip
    assert numbers("key2 has 7.5") == [7.5]


def test_score_exact() -> None:
    assert score("exact", "Final Answer: 4034450", "4034450") == 1.0
    assert score("exact", "The special magic number is 4034450.", "4034450") == 1.0
    assert score("exact", "4034450 or 1234567", "4034450") == 0.0
    assert score("exact", "40344500", "4034450") == 0.0
    assert score("exact", None, "4034450") == 0.0
    assert score("exact", "'utf-8'", '"utf-8"') == 1.0
    labels = ["billing", "delivery"]
    assert score("exact", "The most common topic is **billing**.", "billing", choices=labels) == 1
    assert score("exact", "billing or delivery", "billing", choices=labels) == 0.0


def test_score_number_is_oolong_decay() -> None:
    assert score("number", "42", 42) == 1.0
    assert score("number", "There are 40 records.", 42) == pytest.approx(0.75**2)
    assert score("number", "no idea", 42) == 0.0
    q = "How many records belong to user 64477 from 2024-03-01?"
    assert score("number", "User 64477 has 11 records", 11, query=q) == 1.0
    assert score("number", "64477", 11, query=q) == pytest.approx(0.75 ** (64477 - 11))


def test_score_set_and_items() -> None:
    assert items("- ABC\n- `DEF`\n1. GHI") == ["ABC", "DEF", "GHI"]
    assert score("set", "['ABCDE', 'FGHIJ']", ["ABCDE", "FGHIJ"]) == 1.0
    assert score("set", "ABCDE, FGHIJ and KLMNO", ["ABCDE", "FGHIJ"]) == pytest.approx(0.8)
    assert score("set", "abcde", ["ABCDE", "FGHIJ"]) == pytest.approx(2 / 3)
    assert score("set", "", ["ABCDE"]) == 0.0
    assert score("set", "The variables are ABCDE, FGHIJ.", ["ABCDE", "FGHIJ"]) == 1.0
    assert score("set", "ABCDE or FGHIJ", ["ABCDE", "FGHIJ"]) == 0.0
    values = ["1824511", "2617641"]
    assert score("set", "The numbers are 1824511 and 2,617,641.", values) == 1.0
    assert score("set", "1824511", values) == pytest.approx(2 / 3)
    q = "Which variables equal 80837?"
    assert score("set", "Equal to 80837: ABCDE", ["ABCDE"], query=q) == 1.0


def test_score_pairs() -> None:
    gold = [[11111, 22222], [11111, 33333]]
    assert pairs_in("(22222, 11111)\n(11111,33333)") == {
        frozenset((11111, 22222)), frozenset((11111, 33333)),
    }  # fmt: skip
    assert score("pairs", "(22222, 11111), (11111, 33333)", gold) == 1.0
    assert score("pairs", "[(11111, 22222)]", gold) == pytest.approx(2 / 3)
    assert score("pairs", "none", gold) == 0.0


def test_score_path() -> None:
    assert score("path", "It is in `langgraph/types.py`.", "langgraph/types.py") == 1.0
    assert score("path", "./json/decoder.py", "json/decoder.py") == 1.0
    assert score("path", "json/decoder.py or json/encoder.py", "json/decoder.py") == 0.0
    assert score("path", "decoder.py", "json/decoder.py") == 0.0


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown answer kind"):
        score("fuzzy", "x", "x")


# ---- systems and runner, end to end with a scripted model -------------------------------------


def solver(messages: list[BaseMessage]) -> str:
    """Scripted root model: finds a needle or counts a user's lines with real code."""
    if is_subcall(messages):
        return "unused"
    q = question(messages)
    if turn(messages) == 0:
        key = re.search(r"magic number for ([\w-]+)", q)
        if key:
            pattern = rf"special magic numbers for {key.group(1)} is: (\d+)"
            return code(f"import re\nprint(re.search(r'{pattern}', context).group(1))")
        user = re.search(r"belong to user (\d+)", q).group(1)  # type: ignore[union-attr]
        return code(f"print(sum(l.startswith('user: {user} ') for l in context.splitlines()))")
    printed = re.search(r"Observation:\n(\S+)", last_text(messages))
    return final(printed.group(1) if printed else "unknown")


def bare_reader(messages: list[BaseMessage]) -> str:
    """Scripted bare model: answers a needle question only if the needle is in its prompt."""
    prompt = text_of(messages[-1])
    key = re.search(r"magic number for ([\w-]+)", prompt)
    found = key and re.search(rf"numbers for {key.group(1)} is: (\d+)", prompt)
    return found.group(1) if found else "I cannot tell."


def test_rlm_system_end_to_end_with_real_sandbox() -> None:
    tasks = [make_task("niah_single", 20_000, 2), make_task("oolong_agg", 20_000, 1)]
    assert tasks[1].meta["question_type"] == "count_user"
    settings = Settings(keep_messages=True)
    rows = list(run_suite(tasks, ["rlm"], FakeChatModel(respond=solver), settings))
    assert [r["score"] for r in rows] == [1.0, 1.0]
    for row, task in zip(rows, tasks, strict=True):
        assert row["answer"] == str(task.gold)
        assert row["fingerprint"] == task.fingerprint and row["split"] == "dev"
        assert row["calls"] == 2 and row["tokens"] > 0 and row["error"] is None
        assert row["extra"]["stopped_reason"] == "final_answer"
        roles = [m["role"] for m in row["extra"]["messages"]]
        assert roles[:2] == ["system", "human"] and roles.count("ai") == 2
        assert task.context not in json.dumps(row["extra"]["messages"])


def test_bare_system_cuts_to_the_window_and_marks_the_cut() -> None:
    task = make_task("niah_single", 60_000, 5)
    assert task.meta["depth"] >= 0.5
    small, large = Settings(window_tokens=4000), Settings(window_tokens=40_000)
    prompt, cut = bare_prompt(task, small)
    assert cut and "input cut here" in prompt and len(prompt) <= 3.5 * (4000 - 512)
    assert task.gold not in prompt
    model = FakeChatModel(respond=bare_reader)
    cut_row = next(run_suite([task], ["bare"], model, small))
    full_row = next(run_suite([task], ["bare"], model, large))
    assert (cut_row["score"], cut_row["extra"]["cut"]) == (0.0, True)
    assert (full_row["score"], full_row["extra"]["cut"]) == (1.0, False)


def test_bare_system_retries_a_shorter_cut_when_the_prompt_is_too_long() -> None:
    def strict_window(messages: list[BaseMessage]) -> str:
        prompt = text_of(messages[-1])
        if "boom" in prompt:
            raise ValueError("rate limited")
        if len(prompt) > 10_000:
            raise ValueError("the request exceeds the available context size (n_ctx)")
        return "I cannot tell."

    task = make_task("codeqa", 60_000, 0)
    model = FakeChatModel(respond=strict_window)
    row = next(run_suite([task], ["bare"], model, Settings(window_tokens=4000)))
    assert row["error"] is None and row["calls"] == 2
    assert row["extra"]["window_scale"] == 0.75 and row["extra"]["cut"] is True
    assert row["extra"]["prompt_chars"] <= 10_000
    other = Task("niah_single", 8000, 0, "boom?", "x" * 50_000, "1", "exact")
    row = next(run_suite([other], ["bare"], model, Settings(window_tokens=4000)))
    assert row["calls"] == 1 and "rate limited" in row["error"]


def test_rlms_request_mirrors_the_graph_settings() -> None:
    task = make_task("niah_single", 8000, 0)
    settings = Settings(max_depth=0, max_iterations=4, max_seconds=9.0, window_tokens=1000)
    small = rlms_request(task, {"base_url": "u"}, True, settings)
    # Graph max_depth 0 (rlm_query answered by a plain call) is rlms max_depth 1.
    assert small["max_depth"] == 1 and small["max_iterations"] == 4
    assert small["max_seconds"] == 9.0 and small["sub_window_chars"] == 3500
    assert small["orchestrator"] is False and small["context"] == task.context
    large = rlms_request(task, {"base_url": "u"}, False, settings)
    assert large["orchestrator"] is True and large["sub_window_chars"] is None


def test_rlms_with_a_model_that_has_no_server_is_an_error_row() -> None:
    task = make_task("niah_single", 8000, 0)
    row = next(run_suite([task], ["rlms"], FakeChatModel(respond=bare_reader), Settings()))
    assert row["score"] == 0.0 and "OpenAI-compatible" in row["error"]


class _Scripted(BaseHTTPRequestHandler):
    """OpenAI chat completions over loopback: replies with the server's script, in order."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: Any = self.server
        server.requests.append(body)
        roles = [m["role"] for m in body["messages"]]
        if roles[-2:] == ["assistant", "assistant"]:  # llama.cpp's server refuses this
            self._send(400, {"error": {"message": "Cannot have 2 or more assistant messages"}})
            return
        if len(server.requests) > getattr(server, "fail_after", 10**9):
            self._send(500, {"error": {"message": "server error"}})
            return
        reply = server.script[min(len(server.requests) - 1, len(server.script) - 1)]
        data = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }  # fmt: skip
        self._send(200, data)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted_server() -> Iterator[Any]:
    """A loopback OpenAI-compatible server; set ``.script`` to its replies."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.requests, server.script = [], ["no script"]
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _openai_chat(url: str, small: bool) -> Any:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="m", base_url=url, api_key="k", temperature=0, max_tokens=64)  # type: ignore[arg-type,call-arg]
    chat.tags = ["rlm:small-model"] if small else []
    return chat


needs_rlms = pytest.mark.skipif(sys.version_info < (3, 11), reason="rlms needs Python >= 3.11")


@needs_rlms
@pytest.mark.parametrize("small", [False, True])
def test_rlms_system_runs_the_reference_over_loopback_http(
    small: bool, scripted_server: Any
) -> None:
    task = make_task("niah_single", 20_000, 1)
    key = task.meta["key"]
    repl = (
        "```repl\nimport re\nm = re.search(r'numbers for " + key + r" is: (\d+)'"
        ", context)\nanswer['content'] = m.group(1)\nanswer['ready'] = True\n```"
    )
    scripted_server.script = ["Let me look.\n" + repl]
    settings = Settings(max_seconds=60, keep_messages=True)
    row = next(run_suite([task], ["rlms"], _openai_chat(scripted_server.url, small), settings))
    assert row["error"] is None, row["error"]
    assert row["score"] == 1.0 and row["answer"] == task.gold
    assert row["calls"] >= 1 and row["tokens"] >= 110
    trace = row["extra"]["messages"]
    assert row["extra"]["iterations"] == len(trace) >= 1 and "```repl" in trace[-1]["response"]
    first = scripted_server.requests[0]
    assert first["temperature"] == 0 and first["max_completion_tokens"] == 64
    assert task.context not in json.dumps(first)  # the input stays in the REPL
    system = first["messages"][0]["content"]
    # Small model: the short prompt with its real window (8192 tokens x 3.5 chars) and worked
    # turns in rlms' conventions; no orchestrator addendum.
    assert ("at most about 28,672 chars" in system) is small
    assert ("Example turns" in system) is small and ('answer["ready"] = True' in system)
    assert ("act as an orchestrator" in system) is not small


@needs_rlms
def test_rlms_out_of_iterations_asks_for_its_answer_in_a_form_llama_cpp_accepts(
    scripted_server: Any,
) -> None:
    # A model that never writes code: rlms runs out of iterations and asks for a final answer.
    # As rlms 0.1.3 sends it (a second assistant message in a row), llama.cpp's server refuses
    # it with a 400 (the scripted server does too); the harness sends it as a user message.
    scripted_server.script = ["The magic number is 12345."]
    task = make_task("niah_single", 8000, 0)
    settings = Settings(max_iterations=2, max_seconds=60, keep_messages=True)
    row = next(run_suite([task], ["rlms"], _openai_chat(scripted_server.url, True), settings))
    assert row["error"] is None, row["error"]
    assert row["answer"] == "The magic number is 12345." and row["score"] == 0.0
    assert row["calls"] == 3 and len(scripted_server.requests) == 3
    last = [m["role"] for m in scripted_server.requests[-1]["messages"]]
    assert last[-2:] == ["assistant", "user"]
    assert [m["outputs"] for m in row["extra"]["messages"]][:2] == [[], []]


@needs_rlms
def test_rlms_failure_is_an_error_row_with_what_is_known(scripted_server: Any) -> None:
    # The server fails every call after the first: rlms raises, and the row keeps what is known.
    scripted_server.script = ["The magic number is 12345."]
    scripted_server.fail_after = 1
    task = make_task("niah_single", 8000, 0)
    settings = Settings(max_iterations=3, max_seconds=60, keep_messages=True)
    row = next(run_suite([task], ["rlms"], _openai_chat(scripted_server.url, True), settings))
    assert row["answer"] is None and row["score"] == 0.0
    assert row["error"] and "500" in row["error"]
    assert row["extra"]["usage_incomplete"] is True


# ---- CLI and summary -------------------------------------------------------------------------


def test_cli_run_summarize_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "r.jsonl", tmp_path / "p.png"
    args = ["run", "--model", "tests.fakes:answer_model", "--systems", "rlm,bare"]
    args += ["--families", "niah_single,vartrack", "--sizes", "8k,16k", "--seeds", "0-1"]
    assert main([*args, "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 2 * 2 * 2 * 2
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert len(read_rows(out)) == 16  # nothing re-run
    capsys.readouterr()
    assert main(["summarize", str(out), "--plot", str(png)]) == 0
    table = capsys.readouterr().out
    assert "### niah_single" in table and "| 16k | rlm | 2 |" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_run_defaults_cover_the_whole_suite() -> None:
    args = parser().parse_args(["run", "--model", "local", "--out", "o.jsonl"])
    assert args.families == list(FAMILIES) and args.systems == ["rlm", "bare"]
    assert args.sizes[0] == 8000 and args.sizes[-1] == 8_000_000 and args.split == "dev"


def test_summary_means_and_medians() -> None:
    base = {"family": "f", "size": 8000, "split": "dev", "system": "rlm", "calls": 2, "tokens": 10}
    rows = [
        {**base, "score": s, "seconds": t, "error": None} for s, t in ((1, 1), (0, 3), (0.5, 2))
    ]
    assert "| 8k | rlm | 3 | 0.50 | 2.0 | 2 | 10 | 0 |" in markdown(rows)


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--model", "x", "--families", "nope", "--out", "o"])
    assert "unknown family nope" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_one_subplot_per_family(tmp_path: Path) -> None:
    rows = [
        {"family": f, "size": sz, "split": "dev", "system": s, "score": 1.0, "seconds": 1,
         "calls": 1, "tokens": 1}
        for f in ("a", "b") for sz in (8000, 32000) for s in ("rlm", "bare")
    ]  # fmt: skip
    plot(rows, tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000


def test_the_strategy_of_the_rlm_system_is_chosen_and_recorded() -> None:
    # 8k characters fit a 20k-token window: auto answers directly; rlm forced writes code;
    # the direct system answers in one call whatever the size.
    task = make_task("niah_single", 8_000, 2)

    def respond(messages: list[Any]) -> str:
        if "Read all of it" in str(messages[0].content):  # the direct strategy's prompt
            return final(str(task.gold))
        return solver(messages)

    model = FakeChatModel(respond=respond, profile={"max_input_tokens": 20_000})
    rows = {
        label: next(run_suite([task], [system], model, Settings(strategy=strategy)))
        for label, system, strategy in (
            ("auto", "rlm", "auto"),
            ("forced", "rlm", "rlm"),
            ("direct", "direct", "auto"),
        )
    }
    assert rows["auto"]["extra"]["direct"] and rows["direct"]["extra"]["direct"]
    assert not rows["forced"]["extra"]["direct"] and rows["forced"]["extra"]["strategy"] == "rlm"
    assert rows["direct"]["calls"] == 1 and rows["forced"]["calls"] == 2
    assert {r["score"] for r in rows.values()} == {1.0}
    assert rows["direct"]["system"] == "direct"


def test_cli_passes_any_graph_setting_to_the_rlm_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--model", "tests.fakes:answer_model", "--systems", "rlm", "--keep-messages"]
    args += ["--families", "niah_single", "--sizes", "8k", "--seeds", "0"]
    prompts = {}
    for style in ("full", "compact"):
        out = tmp_path / f"{style}.jsonl"
        setting = ["--rlm-setting", f"prompt_style={style}", "--rlm-setting", "dead_end_retries=2"]
        assert main([*args, *setting, "--out", str(out)]) == 0
        (row,) = read_rows(out)
        assert row["extra"]["settings"] == {"prompt_style": style, "dead_end_retries": 2}
        prompts[style] = row["extra"]["messages"][0]["content"]
    assert prompts["full"] != prompts["compact"]  # the setting reached the graph
    capsys.readouterr()
    for bad, why in (
        ("dead_end_retries=-1", "dead_end_retries must be >= 0"),
        ("dead_end_retries=two", "takes a number or none"),
        ("nope=1", "use NAME=VALUE"),
        ("max_depth=2", "has its own flag: --max-depth"),
    ):
        with pytest.raises(SystemExit):
            main([*args, "--rlm-setting", bad, "--out", str(tmp_path / "x.jsonl")])
        assert why in capsys.readouterr().err


def test_parse_setting_types_and_clears() -> None:
    from rlm_graph.context import parse_setting

    assert parse_setting("exec_timeout=2.5") == ("exec_timeout", 2.5)
    assert parse_setting("dead-end-retries=none") == ("dead_end_retries", None)
    assert parse_setting("strategy=rlm") == ("strategy", "rlm")
    with pytest.raises(ValueError, match="strategy"):
        parse_setting("strategy=sometimes")
