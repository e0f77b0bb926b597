"""``rlm-graph view TRACE [-o FILE.html] [--open]``: write the viewer page for a trace file."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from rlm_graph.viewer.load import TraceError, load_trace
from rlm_graph.viewer.render import render_html

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "rlm-graph view") -> argparse.ArgumentParser:
    """The argument parser of the view command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a self-contained HTML viewer (no network needed) for a --trace file: "
        "a summary .json or a .jsonl event stream, also one left by a crashed run.",
    )
    parser.add_argument("trace", metavar="TRACE", help="trace file (.json or .jsonl)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help="where to write the page (default: TRACE with the suffix .html)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    return parser


def _output_path(trace: Path, output: str | None) -> Path:
    out = Path(output) if output else trace.with_suffix(".html")
    if out.resolve() == trace.resolve():
        raise TraceError(f"{trace} is already the output path; pass -o FILE.html")
    if not out.parent.is_dir():
        raise TraceError(f"output directory {out.parent} does not exist; create it or change -o")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the view command; print the page's path; return 0, or 2 with a one-line error."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    trace = Path(args.trace)
    try:
        out = _output_path(trace, args.output)
        page = render_html(load_trace(trace))
        out.write_text(page, encoding="utf-8")
    except FileNotFoundError:
        print(f"rlm-graph view: error: trace file {trace} not found", file=sys.stderr)
        return 2
    except (TraceError, OSError) as exc:
        print(f"rlm-graph view: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    if args.open:
        webbrowser.open(out.resolve().as_uri())
    return 0
