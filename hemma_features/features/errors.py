"""LanguageTool match classification and error rates (tier 1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from hemma_features.features.text import safe_div

ErrorKind = Literal["grammar", "spelling", "punctuation"]
_SPELLING_NAMES = frozenset({"typos", "spelling", "misspelling"})


def classify_match(rule_id: str, category_id: str, category_name: str = "") -> ErrorKind:
    """Punctuation if the category or rule id mentions PUNCT; else spelling if the category
    (its id or name) is TYPOS / spelling / misspelling; else grammar.

    The rule's ``issueType`` is deliberately not used: LanguageTool marks grammar rules such
    as EN_A_VS_AN with issueType "misspelling", and the team's features counted by category.
    """
    if "PUNCT" in (category_id or "").upper() or "PUNCT" in (rule_id or "").upper():
        return "punctuation"
    if {(category_id or "").lower(), (category_name or "").lower()} & _SPELLING_NAMES:
        return "spelling"
    return "grammar"


def classify_matches(matches: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Count LanguageTool ``/v2/check`` matches (JSON dicts) by kind."""
    counts = {"grammar_errors": 0, "spelling_errors": 0, "punctuation_errors": 0}
    for match in matches:
        rule = match.get("rule") or {}
        category = rule.get("category") or {}
        kind = classify_match(rule.get("id", ""), category.get("id", ""), category.get("name", ""))
        counts[f"{kind}_errors"] += 1
    return counts


def error_rates(counts: Mapping[str, int], word_count: int) -> dict[str, float]:
    """Errors per 100 words for each kind (0 for a text without words)."""
    return {
        f"{kind}_errors_per_100_words": safe_div(100.0 * counts[f"{kind}_errors"], word_count)
        for kind in ("grammar", "spelling", "punctuation")
    }
