"""Ranking tools for a free-text query: BM25 over each tool's names and description.

With hundreds of tools a model should not read every stub to find the two it needs. The
listing's `query` ranks tools by the words they share with the query, weighting the words of
the tool's own name and its server's name above the words of its description, and preferring
the tools of a server the query names. Pure and deterministic: equal scores are ordered by
server and tool name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from .schema import singular

__all__ = ["Document", "rank", "words"]

K1 = 1.2
B = 0.75
NAME_WEIGHT = 3
"""Each word of the tool's name counts as this many words of description."""
SERVER_WEIGHT = 2
SERVER_MATCH = 1.5
"""A query naming a server (all words of its name) multiplies the scores of that server's tools."""

_SPLIT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "has", "have", "in", "into", "is",
    "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with", "you", "your",
})  # fmt: skip


def words(text: str) -> list[str]:
    """Lower-case words of `text` (camelCase and snake_case split), plurals folded, no stop words."""
    found = []
    for raw in _SPLIT.findall(text):
        word = singular(raw.lower())
        if word and word not in _STOP:
            found.append(word)
    return found


@dataclass(frozen=True)
class Document:
    """One tool as the ranking sees it; `key` is what `rank` returns for it."""

    key: tuple[str, str]
    server: str
    names: Sequence[str]
    description: str

    @cached_property
    def server_words(self) -> tuple[str, ...]:
        """The words of the server's name: terms of the document, and what a query must name."""
        return tuple(words(self.server))

    def terms(self) -> list[str]:
        name_words = [w for n in self.names for w in words(n)]
        return list(self.server_words) * SERVER_WEIGHT + name_words * NAME_WEIGHT + words(self.description)

    @cached_property
    def counts(self) -> Counter[str]:
        """How often each term occurs (computed once; a listing keeps its documents)."""
        return Counter(self.terms())


def rank(query: str, documents: Iterable[Document]) -> list[tuple[str, str]]:
    """Keys of the documents sharing a word with `query`, best first (BM25, ties by key)."""
    wanted = list(dict.fromkeys(words(query)))
    docs = list(documents)
    query_words = frozenset(wanted)
    if not wanted or not docs:
        return []
    average = sum(sum(d.counts.values()) for d in docs) / len(docs) or 1.0
    frequency = Counter(w for d in docs for w in wanted if w in d.counts)
    scored = []
    for doc in docs:
        counts = doc.counts
        length = sum(counts.values())
        score = 0.0
        for w in wanted:
            tf = counts.get(w, 0)
            if tf:
                idf = math.log(1 + (len(docs) - frequency[w] + 0.5) / (frequency[w] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        if score > 0:
            named = doc.server_words
            scored.append((-score * (SERVER_MATCH if named and query_words.issuperset(named) else 1.0), doc.key))
    scored.sort()
    return [key for _, key in scored]
