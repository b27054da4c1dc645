"""Words, sentences, paragraphs and the tier 1 length features."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span, Token

# A blank line: a newline, optional horizontal whitespace, another newline.
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def safe_div(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0 when the denominator is 0 (the team's convention)."""
    return numerator / denominator if denominator else 0.0


def is_word(token: Token) -> bool:
    """A word is a token that is neither whitespace nor punctuation."""
    return not (token.is_space or token.is_punct)


def words(doc_or_span: Doc | Span) -> list[Token]:
    return [t for t in doc_or_span if is_word(t)]


_SENTENCES_KEY = "hemma_features.sentences"


def sentences(doc: Doc) -> list[Span]:
    """``list(doc.sents)``, kept in ``doc.user_data``: walking the parse for sentence
    boundaries costs more than most features, and several features need them."""
    cached = doc.user_data.get(_SENTENCES_KEY)
    if cached is None:
        cached = list(doc.sents) if len(doc) else []
        doc.user_data[_SENTENCES_KEY] = cached
    return cached


def sentences_with_words(doc: Doc) -> list[Span]:
    """spaCy sentences that hold at least one word (a stray "..." is not a sentence)."""
    return [s for s in sentences(doc) if any(is_word(t) for t in s)]


def sentence_texts(doc: Doc) -> list[str]:
    return [s.text.strip() for s in sentences_with_words(doc)]


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the paragraphs of ``text``: blocks split on blank lines,
    stripped of surrounding whitespace, empty blocks dropped."""
    spans = []
    start = 0
    for match in [*_BLANK_LINE.finditer(text), None]:
        end = match.start() if match else len(text)
        block = text[start:end]
        stripped = block.strip()
        if stripped:
            left = start + (len(block) - len(block.lstrip()))
            spans.append((left, left + len(stripped)))
        if match:
            start = match.end()
    return spans


def split_paragraphs(text: str) -> list[str]:
    return [text[a:b] for a, b in paragraph_spans(text)]


def length_features(doc: Doc) -> dict[str, float | int]:
    """``word_count``, ``avg_word_length``, ``avg_sentence_length`` and ``ttr``."""
    ws = words(doc)
    n_words = len(ws)
    n_sentences = len(sentences_with_words(doc))
    return {
        "avg_sentence_length": safe_div(n_words, n_sentences),
        "ttr": safe_div(len({t.lower_ for t in ws}), n_words),
        "word_count": n_words,
        "avg_word_length": safe_div(sum(len(t.text) for t in ws), n_words),
    }
