"""Real English text found offline: the documentation topics that ship with CPython (``pydoc_data``).

The sentences are prose from the language reference (paragraphs of code, grammar and tables are
indented there and left out), kept when they have 5 to 40 words, most of them plain words.
"""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def pydoc_sentences() -> tuple[str, ...]:
    """The unique prose sentences of ``pydoc_data.topics``, in a fixed order (topics sorted by name)."""
    from pydoc_data.topics import topics

    found: list[str] = []
    for key in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[key]):
            if paragraph.startswith("   "):  # code, grammar, tables
                continue
            paragraph = re.sub(r"\s+", " ", paragraph).strip()
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", paragraph):
                words = sentence.split()
                if not 5 <= len(words) <= 40 or not sentence[0].isupper() or sentence[-1] not in ".!?":
                    continue
                if sum(w.strip('.,;:()"').isalpha() for w in words) >= 0.8 * len(words):
                    found.append(sentence)
    return tuple(dict.fromkeys(found))
