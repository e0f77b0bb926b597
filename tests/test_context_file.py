"""Bad input to the CLI: empty stdin, stdin on a terminal, binary files, bad model factories,
and big files (a status line, one copy in memory)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from rlm_graph import cli, context_file
from rlm_graph.context_file import ContextFileError, read_context
from tests.ptyrun import run_in_pty

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "rlm-graph")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "RLM_MODEL"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["q", "--model", "tests.fakes:answer_model", "--quiet", *args])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm-graph: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_empty_stdin_from_dev_null_is_a_usage_error() -> None:
    proc = subprocess.run(
        [SCRIPT, "q", "--context-file", "-", "--model", "tests.fakes:answer_model"],
        cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    _one_line(proc.stderr, "stdin is empty")


def test_empty_pipe_and_empty_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, err = _main(capsys, "--context-file", "-")
    assert code == 2
    _one_line(err, "stdin is empty")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, err = _main(capsys, "--context-file", str(empty))
    assert code == 2
    _one_line(err, "context file is empty", str(empty))


def test_binary_and_non_utf8_files_are_refused_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, err = _main(capsys, "--context-file", str(binary))
    assert code == 2
    _one_line(err, str(binary), "binary", "offset 8", "--decode-errors replace")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9 ok".encode("latin-1"))
    code, err = _main(capsys, "--context-file", str(latin))
    assert code == 2
    _one_line(err, str(latin), "not UTF-8", "0xe9 at offset 3")
    # Asked for explicitly, it is read with replacement characters.
    code, err = _main(capsys, "--context-file", str(latin), "--decode-errors", "replace")
    assert code == 0, err


def test_bad_factory_spec_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # FakeChatModel() without its required field: pydantic's many-line ValidationError.
    code = cli.main(["q", "--model", "tests.fakes:FakeChatModel"])
    err = capsys.readouterr().err
    assert code == 2
    _one_line(err, "tests.fakes:FakeChatModel", "ValidationError", "no arguments")
    assert "Traceback" not in err
    code = cli.main(["q", "--model", "json:dumps"])
    assert code == 2
    _one_line(capsys.readouterr().err, "json:dumps", "TypeError")


def test_stdin_on_a_terminal_gets_a_hint() -> None:
    screen = run_in_pty(
        [SCRIPT, "How long?", "--context-file", "-", "--model", "tests.fakes:answer_model"],
        cwd=ROOT,
        env={**_env(), "TERM": "xterm"},
        stdin_tty=True,
        reply=(b"press Ctrl-D", b"hello\n\x04"),
        timeout=120,
    )
    assert screen.returncode == 0, screen.text
    assert "Reading the context from the terminal" in screen.text
    assert "6" in screen.text.split("press Ctrl-D", 1)[1]  # "hello\n" was the context


def test_big_file_status_lines_and_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 40 * 1024 * 1024
    path = tmp_path / "big.txt"
    with path.open("wb") as f:
        line = b"x" * 1023 + b"\n"
        for _ in range(size // len(line)):
            f.write(line)
    monkeypatch.setattr(context_file, "BIG_FILE_BYTES", 1024 * 1024)
    said: list[str] = []
    tracemalloc.start()
    try:
        text = read_context(str(path), say=said.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(text) == size
    # The str is the only copy: reading bytes then decoding them would peak at twice the size.
    assert peak < 1.2 * size, peak / size
    assert said[0].startswith(f"Reading {path} (42 MB)")
    assert said[1].startswith(f"Read {size:,} characters in ")


def test_small_files_say_nothing_and_errors_are_context_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("ünïcode\n")
    said: list[str] = []
    assert read_context(str(path), say=said.append) == "ünïcode\n"
    assert said == []
    with pytest.raises(ContextFileError, match="not found"):
        read_context(str(tmp_path / "missing.txt"))
    with pytest.raises(ContextFileError, match="not a regular file"):
        read_context(str(tmp_path))


_BAD = [
    b"ok text " * 5 + b"\x00 then more",  # NUL past the first slices
    b"caf\xc3\xa9 " * 4 + b"\xe9 latin-1",  # a bad byte after good multi-byte ones
    b"cut short \xe4\xb8",  # a sequence the file ends inside
    b"\xf0\x9f\x98\x80 ok \xed\xa0\x80 surrogate",  # an encoded surrogate
    b"\xff bad first, " + b"x" * 20 + b" NUL \x00 slices later",  # still called binary
]


@pytest.mark.parametrize("data", _BAD, ids=range(len(_BAD)))
def test_the_streaming_check_says_what_the_whole_read_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    monkeypatch.setattr(context_file, "SLICE_BYTES", 3)  # slices cut through everything
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(ContextFileError) as whole:
        read_context(str(path))
    with pytest.raises(ContextFileError) as streamed:
        context_file.check_context(str(path))
    assert str(streamed.value) == str(whole.value)
    assert context_file.check_context(str(path), decode_errors="replace") == len(data)
    with path.open("rb") as f:
        text = "".join(context_file.text_slices(f, "x", "replace"))
    assert (
        text == read_context(str(path), decode_errors="replace") == data.decode("utf-8", "replace")
    )


def _write_lines(path: Path, size: int) -> None:
    line = "caf\xe9 line\n".encode()
    with path.open("wb") as f:
        block = line * ((1 << 20) // len(line))
        while f.tell() < size:
            f.write(block)


def test_the_cli_checks_a_big_file_without_holding_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small = tmp_path / "small.txt"
    _write_lines(small, 1)
    assert _main(capsys, "--context-file", str(small))[0] == 0  # imports done before measuring
    path = tmp_path / "big.txt"
    size = 64 << 20
    _write_lines(path, size)
    chars = len(path.read_bytes().decode())
    tracemalloc.start()
    try:
        code = cli.main(
            ["q", "--model", "tests.fakes:answer_model", "--quiet", "--context-file", str(path)]
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == str(chars)  # the sandbox saw the whole file
    # Checked in slices, read by the run in slices: never the file (64 MiB) in the host.
    print(f"cli host peak {peak / 2**20:.1f} MiB")
    assert peak < size // 3, peak


def test_the_cli_passes_its_decoding_to_the_run(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("text")
    args = cli._build_parser().parse_args(["q", "--context-file", str(path)])
    assert cli._context_input(args) == {
        "context_file": str(path.resolve()),
        "decode_errors": "strict",
    }
    args.decode_errors = "replace"
    assert cli._context_input(args)["decode_errors"] == "replace"
