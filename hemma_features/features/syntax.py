"""Tier 2 syntactic features over a dependency-parsed spaCy Doc."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hemma_features.features.text import safe_div, sentences

if TYPE_CHECKING:
    from spacy.tokens import Doc

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
_PHRASES_BY_FIRST_WORD: dict[str, list[list[str]]] = {}
for _connective in CONNECTIVES:
    _PHRASES_BY_FIRST_WORD.setdefault(_connective.split()[0], []).append(_connective.split())


def head_indices(doc: Doc) -> np.ndarray:
    """Absolute index of each token's head (a root is its own head).

    Read as one array: walking ``token.head`` objects costs more than the features.
    """
    relative = doc.to_array("HEAD").astype(np.int64)  # offsets stored as unsigned
    return np.arange(len(doc), dtype=np.int64) + relative


def token_depths(doc: Doc) -> np.ndarray:
    """Each token's distance in arcs to the root of its sentence."""
    heads = head_indices(doc)
    depth = np.zeros(len(doc), dtype=np.int64)
    node = np.arange(len(doc), dtype=np.int64)
    # A parse reaches its root in fewer steps than the doc has tokens; the bound only
    # guards against a malformed hand-built Doc.
    for _ in range(len(doc)):
        moving = heads[node] != node
        if not moving.any():
            break
        depth += moving
        node = np.where(moving, heads[node], node)
    return depth


def parse_tree_depth(doc: Doc) -> float:
    """Mean over sentences of the deepest token's distance (in arcs) to its root."""
    if not len(doc):
        return 0.0
    depths = token_depths(doc)
    deepest = [int(depths[s.start : s.end].max()) for s in sentences(doc)]
    return safe_div(sum(deepest), len(deepest))


def _count_labels(doc: Doc, attribute: str, labels: frozenset[str] | set[str]) -> int:
    ids = [doc.vocab.strings[label] for label in labels if label in doc.vocab.strings]
    return int(np.isin(doc.to_array(attribute), np.array(ids, dtype=np.uint64)).sum()) if ids else 0


def clause_count(doc: Doc) -> int:
    """Tokens whose dependency marks a clause (ccomp, xcomp, advcl, relcl, csubj, csubjpass)."""
    return _count_labels(doc, "DEP", CLAUSE_DEPS)


def passive_ratio(doc: Doc) -> float:
    """Passive auxiliaries (``auxpass``) per VERB token."""
    return safe_div(_count_labels(doc, "DEP", {"auxpass"}), _count_labels(doc, "POS", {"VERB"}))


def dep_distance(doc: Doc) -> float:
    """Mean |token index − head index| over the tokens that are not a root."""
    heads = head_indices(doc)
    distances = np.abs(heads - np.arange(len(doc)))
    non_root = distances > 0
    return safe_div(float(distances[non_root].sum()), int(non_root.sum()))


def find_connectives(doc: Doc) -> list[str]:
    """Every occurrence of a connective, matched on whole lowercased tokens."""
    lowered = [t.lower_ for t in doc]
    found = []
    for i, word in enumerate(lowered):
        for phrase in _PHRASES_BY_FIRST_WORD.get(word, ()):
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
