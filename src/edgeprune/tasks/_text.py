"""Real English text found offline, in what every CPython installation ships.

* ``pydoc_sentences``: the documentation topics of the language reference (``pydoc_data``);
  paragraphs of code, grammar and tables are indented there and left out.
* ``docstring_sentences``: the docstrings of the standard library's own modules, classes and
  functions, read from its source files with :mod:`ast` (nothing is imported, so no module's import
  side effects run); the test suites and doctest examples are left out.

Both keep sentences of 5 to 40 words that start with a capital, end with ``.``, ``!`` or ``?`` and
are mostly plain words.
"""
from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


def _prose(paragraphs: Iterable[str]) -> Iterator[str]:
    """The prose sentences of ``paragraphs`` (whitespace folded, 5-40 words, >= 80% plain words)."""
    for paragraph in paragraphs:
        paragraph = re.sub(r"\s+", " ", paragraph).strip()
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", paragraph):
            words = sentence.split()
            if not 5 <= len(words) <= 40 or not sentence[0].isupper() or sentence[-1] not in ".!?":
                continue
            if sum(w.strip('.,;:()"').isalpha() for w in words) >= 0.8 * len(words):
                yield sentence


@lru_cache(maxsize=1)
def pydoc_sentences() -> tuple[str, ...]:
    """The unique prose sentences of ``pydoc_data.topics``, in a fixed order (topics sorted by name)."""
    from pydoc_data.topics import topics

    found: list[str] = []
    for key in sorted(topics):
        paragraphs = re.split(r"\n\s*\n", topics[key])
        found.extend(_prose(p for p in paragraphs if not p.startswith("   ")))  # indented: code, grammar, tables
    return tuple(dict.fromkeys(found))


def _stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIPPED_DIRS.intersection(p.relative_to(root).parts))


@lru_cache(maxsize=1)
def docstring_sentences() -> tuple[str, ...]:
    """The unique prose sentences of the standard library's docstrings, in a fixed order (files sorted by path).

    About 12,000 sentences on CPython 3.11 (some 15 s to parse the sources on one core).
    """
    return docstring_prose(_stdlib_sources())


def docstring_prose(paths: Iterable[Path]) -> tuple[str, ...]:
    """The unique prose sentences of the module, class and function docstrings in ``paths`` (parsed, not imported)."""
    found: list[str] = []
    for path in paths:
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):  # a deliberately broken file, a bad encoding
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:  # indented paragraphs and doctest examples are code
                    paragraphs = re.split(r"\n\s*\n", doc)
                    found.extend(_prose(p for p in paragraphs if not p.startswith(" ") and ">>>" not in p))
    return tuple(dict.fromkeys(found))
