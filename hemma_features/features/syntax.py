"""Tier 2 syntactic features over a dependency-parsed spaCy Doc."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hemma_features.features.text import safe_div

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span, Token

CLAUSE_DEPS = frozenset({"ccomp", "xcomp", "advcl", "relcl", "csubj", "csubjpass"})

#: The team's list of discourse connectives (single words and phrases).
CONNECTIVES: tuple[str, ...] = (
    "however",
    "therefore",
    "moreover",
    "furthermore",
    "nevertheless",
    "thus",
    "hence",
    "consequently",
    "although",
    "because",
    "meanwhile",
    "additionally",
    "finally",
    "in addition",
    "on the other hand",
)


def _depth(token: Token) -> int:
    depth = 0
    # A well-formed parse reaches its root in fewer steps than the sentence has tokens;
    # the bound only guards against a malformed hand-built Doc.
    for _ in range(len(token.doc)):
        if token.head.i == token.i:
            return depth
        token = token.head
        depth += 1
    return depth


def _sentence_depth(sentence: Span) -> int:
    return max((_depth(t) for t in sentence), default=0)


def parse_tree_depth(doc: Doc) -> float:
    """Mean over sentences of the deepest token's distance (in arcs) to its root."""
    sentences = list(doc.sents) if len(doc) else []
    return safe_div(sum(_sentence_depth(s) for s in sentences), len(sentences))


def clause_count(doc: Doc) -> int:
    """Tokens whose dependency marks a clause (ccomp, xcomp, advcl, relcl, csubj, csubjpass)."""
    return sum(1 for t in doc if t.dep_ in CLAUSE_DEPS)


def passive_ratio(doc: Doc) -> float:
    """Passive auxiliaries (``auxpass``) per VERB token."""
    auxpass = sum(1 for t in doc if t.dep_ == "auxpass")
    verbs = sum(1 for t in doc if t.pos_ == "VERB")
    return safe_div(auxpass, verbs)


def dep_distance(doc: Doc) -> float:
    """Mean |token index − head index| over the tokens that are not a root."""
    distances = [abs(t.i - t.head.i) for t in doc if t.head.i != t.i]
    return safe_div(sum(distances), len(distances))


def find_connectives(doc: Doc) -> list[str]:
    """Every occurrence of a connective, matched on whole lowercased tokens."""
    lowered = [t.lower_ for t in doc]
    phrases = [c.split() for c in CONNECTIVES]
    found = []
    for i in range(len(lowered)):
        for phrase in phrases:
            if lowered[i : i + len(phrase)] == phrase:
                found.append(" ".join(phrase))
    return found


def connective_diversity(doc: Doc) -> float:
    """Distinct connectives found / connectives found (0 if none)."""
    found = find_connectives(doc)
    return safe_div(len(set(found)), len(found))


def syntax_features(doc: Doc) -> dict[str, float | int]:
    """The five tier 2 features that come from the parse alone."""
    return {
        "parse_tree_depth": parse_tree_depth(doc),
        "clause_count": clause_count(doc),
        "passive_ratio": passive_ratio(doc),
        "dep_distance": dep_distance(doc),
        "connective_diversity": connective_diversity(doc),
    }
