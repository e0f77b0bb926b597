"""Real text: questions about installed Python source (stdlib, langgraph, langchain_core).

The payload is whole ``.py`` files, each after a ``### FILE: <path>`` header, chosen by seed
from one source tree and concatenated in path order. Gold answers come from :mod:`ast` over
exactly those files. The trees are pinned by the installed versions, recorded in ``meta``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import platform
import random
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.longctx.tasks import AnswerKind, Task

HEADER = "### FILE: {path}\n"
QUESTION_TYPES: tuple[str, ...] = ("class_file", "param_count", "default", "subclasses")
_SKIP_PARTS = {"test", "tests", "site-packages", "idlelib", "__pycache__", "lib2to3"}


@dataclass(frozen=True)
class Tree:
    """One source tree: a display name, its root directory and its version."""

    name: str
    root: Path
    version: str


def trees() -> list[Tree]:
    """The installed source trees, in a fixed order (missing packages are left out)."""
    out = [Tree("stdlib", Path(sysconfig.get_paths()["stdlib"]), platform.python_version())]
    for pkg, dist in (("langgraph", "langgraph"), ("langchain_core", "langchain-core")):
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            out.append(Tree(pkg, root.parent, importlib.metadata.version(dist)))
    return out


def source_files(tree: Tree) -> list[tuple[str, Path]]:
    """``(relative path, file)`` of the tree's ``.py`` files, sorted by path."""
    if tree.name == "stdlib":
        candidates = tree.root.rglob("*.py")
    else:
        candidates = (tree.root / tree.name).rglob("*.py")
    rows = []
    for f in candidates:
        rel = f.relative_to(tree.root).as_posix()
        if not _SKIP_PARTS.intersection(rel.split("/")[:-1]):
            rows.append((rel, f))
    return sorted(rows)


def _larger_than(files: list[tuple[str, Path]], size: int) -> bool:
    total = 0
    for _, path in files:
        total += path.stat().st_size
        if total > size:
            return True
    return False


def _select(rng: random.Random, files: list[tuple[str, Path]], size: int) -> dict[str, str]:
    order = list(range(len(files)))
    rng.shuffle(order)
    chosen: dict[str, str] = {}
    total = 0
    for i in order:
        rel, path = files[i]
        overhead = len(HEADER.format(path=rel)) + 1
        # Judged by byte size (>= characters): decided before reading, so small inputs are fast.
        if total + overhead + path.stat().st_size > size:
            continue
        try:
            text = path.read_text(encoding="utf-8")
            ast.parse(text)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        chosen[rel] = text
        total += overhead + len(text)
        if size - total < 200:
            break
    return dict(sorted(chosen.items()))


def payload(files: dict[str, str]) -> str:
    """Files concatenated in path order, each after its header."""
    return "\n".join(HEADER.format(path=p) + t for p, t in files.items())


def codeqa(size: int, seed: int) -> Task:
    """One question over seeded whole files of one installed tree; type cycles with the seed."""
    rng = random.Random(f"codeqa/{size}/{seed}")
    listing = {tree: source_files(tree) for tree in trees()}
    sized = [t for t, fs in listing.items() if _larger_than(fs, size)]
    tree = rng.choice(sized or list(listing)[:1])
    files = _select(rng, listing[tree], size)
    facts = Facts.collect(files)
    start = seed % len(QUESTION_TYPES)
    for step in range(len(QUESTION_TYPES)):
        qtype = QUESTION_TYPES[(start + step) % len(QUESTION_TYPES)]
        made = facts.question(qtype, rng)
        if made is not None:
            query, gold, kind = made
            break
    else:
        raise ValueError(f"codeqa: no question fits {len(files)} files at size {size}")
    intro = "The text is Python source files, each after a line '### FILE: <path>'.\n"
    meta = {"question_type": qtype, "tree": tree.name, "version": tree.version, "files": len(files)}
    return Task("codeqa", size, seed, intro + query, payload(files), gold, kind, meta)


@dataclass
class Facts:
    """What :mod:`ast` finds in the chosen files."""

    class_files: dict[str, list[str]]
    bases: dict[str, list[str]]
    functions: list[tuple[str, str, ast.arguments]]

    @classmethod
    def collect(cls, files: dict[str, str]) -> Facts:
        """Walk every file once."""
        class_files: dict[str, list[str]] = {}
        bases: dict[str, list[str]] = {}
        functions: list[tuple[str, str, ast.arguments]] = []
        for path, text in files.items():
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef):
                    class_files.setdefault(node.name, []).append(path)
                    for base in node.bases:
                        name = _base_name(base)
                        if name:
                            bases.setdefault(name, []).append(node.name)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((path, node.name, node.args))
        return cls(class_files, bases, functions)

    def question(self, qtype: str, rng: random.Random) -> tuple[str, object, AnswerKind] | None:
        """``(query, gold, kind)`` for ``qtype``, or None when these files have no instance."""
        if qtype == "class_file":
            unique = sorted(c for c, ps in self.class_files.items() if len(ps) == 1)
            if not unique:
                return None
            name = rng.choice(unique)
            q = f"Which file defines the class {name}? Answer with the file path."
            return q, self.class_files[name][0], "path"
        if qtype == "param_count":
            return self._param_count(rng)
        if qtype == "default":
            return self._default(rng)
        return self._subclasses(rng)

    def _param_count(self, rng: random.Random) -> tuple[str, object, AnswerKind] | None:
        names = Counter(a for _, _, args in self.functions for a in set(_param_names(args)))
        common = sorted(n for n, c in names.items() if 2 <= c and n not in {"self", "cls"})
        if not common:
            return None
        param = rng.choice(common)
        gold = names[param]
        q = (
            f"How many function definitions (methods and nested functions included) in these "
            f"files have a parameter named '{param}'? Answer with a number."
        )
        return q, gold, "number"

    def _default(self, rng: random.Random) -> tuple[str, object, AnswerKind] | None:
        seen = Counter((p, f) for p, f, _ in self.functions)
        options = []
        for path, fn, args in self.functions:
            if seen[(path, fn)] != 1:
                continue
            for name, default in _defaults(args):
                options.append((path, fn, name, ast.unparse(default)))
        if not options:
            return None
        path, fn, name, gold = rng.choice(sorted(options))
        q = (
            f"In the file {path}, what is the default value of the parameter '{name}' of the "
            f"function {fn}? Answer with the Python expression as written."
        )
        return q, gold, "exact"

    def _subclasses(self, rng: random.Random) -> tuple[str, object, AnswerKind] | None:
        options = sorted(b for b, subs in self.bases.items() if 2 <= len(set(subs)) <= 12)
        if not options:
            return None
        base = rng.choice(options)
        q = (
            f"Which classes in these files have {base} as a direct base class? Answer with the "
            "class names, separated by commas."
        )
        return q, sorted(set(self.bases[base])), "set"


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _base_name(node.value)
    return None


def _param_names(args: ast.arguments) -> list[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return [a.arg for a in every]


def _defaults(args: ast.arguments) -> list[tuple[str, ast.expr]]:
    positional = [*args.posonlyargs, *args.args]
    pairs = list(
        zip(
            [a.arg for a in positional[len(positional) - len(args.defaults) :]],
            args.defaults,
            strict=False,
        )
    )
    pairs += [
        (a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=False) if d is not None
    ]
    return pairs
