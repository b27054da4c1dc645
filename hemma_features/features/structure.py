"""Tier 3 structure features: paragraphs, intro/conclusion, overlap, pronoun use."""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

from hemma_features.features.text import (
    is_word,
    paragraph_spans,
    safe_div,
    sentences_with_words,
    words,
)

if TYPE_CHECKING:
    from spacy.tokens import Doc

INTRO_MIN_WORDS = 30
CLOSING_MARKERS: tuple[str, ...] = (
    "in conclusion",
    "to conclude",
    "in summary",
    "to summarize",
    "to summarise",
    "to sum up",
    "all in all",
    "in short",
    "overall",
)
_CLOSING = re.compile(r"\b(?:" + "|".join(re.escape(m) for m in CLOSING_MARKERS) + r")\b")


def words_per_paragraph(doc: Doc, spans: list[tuple[int, int]]) -> list[int]:
    """Word count of each paragraph span (a token belongs where its first character lies)."""
    counts = [0] * len(spans)
    j = 0
    for token in doc:
        if not is_word(token):
            continue
        while j < len(spans) and token.idx >= spans[j][1]:
            j += 1
        if j < len(spans) and token.idx >= spans[j][0]:
            counts[j] += 1
    return counts


def has_intro(paragraph_word_counts: list[int], min_words: int = INTRO_MIN_WORDS) -> bool:
    """The first paragraph has at least ``min_words`` words."""
    return bool(paragraph_word_counts) and paragraph_word_counts[0] >= min_words


def has_conclusion(paragraphs: list[str]) -> bool:
    """The last paragraph contains a closing marker such as "in conclusion" or "overall"."""
    return bool(paragraphs) and _CLOSING.search(paragraphs[-1].lower()) is not None


def _jaccard(a: set[str], b: set[str]) -> float:
    return safe_div(len(a & b), len(a | b))


def lexical_overlap(doc: Doc) -> float:
    """Mean Jaccard overlap of the lowercased word sets of adjacent sentences."""
    sets = [{t.lower_ for t in words(s)} for s in sentences_with_words(doc)]
    pairs = [_jaccard(a, b) for a, b in itertools.pairwise(sets)]
    return safe_div(sum(pairs), len(pairs))


def pronoun_noun_ratio(doc: Doc) -> float:
    """PRON tokens / (NOUN + PROPN tokens)."""
    pronouns = sum(1 for t in doc if t.pos_ == "PRON")
    nouns = sum(1 for t in doc if t.pos_ in ("NOUN", "PROPN"))
    return safe_div(pronouns, nouns)


def structure_features(doc: Doc) -> dict[str, float | int | bool]:
    """All five tier 3 features for the text ``doc`` was parsed from."""
    spans = paragraph_spans(doc.text)
    paragraphs = [doc.text[a:b] for a, b in spans]
    return {
        "paragraph_count": len(spans),
        "has_intro": has_intro(words_per_paragraph(doc, spans)),
        "has_conclusion": has_conclusion(paragraphs),
        "lexical_overlap": lexical_overlap(doc),
        "pronoun_noun_ratio": pronoun_noun_ratio(doc),
    }
