"""Pure feature functions: spaCy ``Doc``s, strings and vectors in, numbers out.

Nothing here touches Ray, files or the network, so every function can be tested on a
hand-built ``Doc`` with values worked out by hand.
"""

from hemma_features.features.errors import classify_match, classify_matches, error_rates
from hemma_features.features.readability import count_syllables, readability
from hemma_features.features.similarity import (
    cosine,
    pairwise_similarity_variance,
    prompt_features,
)
from hemma_features.features.structure import (
    has_conclusion,
    has_intro,
    lexical_overlap,
    pronoun_noun_ratio,
    structure_features,
)
from hemma_features.features.syntax import (
    clause_count,
    connective_diversity,
    dep_distance,
    parse_tree_depth,
    passive_ratio,
    syntax_features,
)
from hemma_features.features.text import (
    length_features,
    paragraph_spans,
    sentence_texts,
    sentences_with_words,
    split_paragraphs,
    words,
)

__all__ = [
    "classify_match",
    "classify_matches",
    "clause_count",
    "connective_diversity",
    "cosine",
    "count_syllables",
    "dep_distance",
    "error_rates",
    "has_conclusion",
    "has_intro",
    "length_features",
    "lexical_overlap",
    "pairwise_similarity_variance",
    "paragraph_spans",
    "parse_tree_depth",
    "passive_ratio",
    "prompt_features",
    "pronoun_noun_ratio",
    "readability",
    "sentence_texts",
    "sentences_with_words",
    "split_paragraphs",
    "structure_features",
    "syntax_features",
    "words",
]
