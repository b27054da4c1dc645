"""Feature functions on hand-built parses; expected values worked out by hand below."""

import math

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc

from hemma_features import features as F

VOCAB = spacy.blank("en").vocab


def doc_cat_chased() -> Doc:
    """'The cat was chased by dogs. It ran because it was scared.' with a fixed parse."""
    rows = [
        # word, pos, dep, head, sentence start
        ("The", "DET", "det", 1, True),
        ("cat", "NOUN", "nsubjpass", 3, False),
        ("was", "AUX", "auxpass", 3, False),
        ("chased", "VERB", "ROOT", 3, False),
        ("by", "ADP", "agent", 3, False),
        ("dogs", "NOUN", "pobj", 4, False),
        (".", "PUNCT", "punct", 3, False),
        ("It", "PRON", "nsubj", 8, True),
        ("ran", "VERB", "ROOT", 8, False),
        ("because", "SCONJ", "mark", 12, False),
        ("it", "PRON", "nsubjpass", 12, False),
        ("was", "AUX", "auxpass", 12, False),
        ("scared", "VERB", "advcl", 8, False),
        (".", "PUNCT", "punct", 8, False),
    ]
    spaces = [True] * len(rows)
    spaces[5] = spaces[12] = spaces[13] = False
    return Doc(
        VOCAB,
        words=[r[0] for r in rows],
        spaces=spaces,
        pos=[r[1] for r in rows],
        deps=[r[2] for r in rows],
        heads=[r[3] for r in rows],
        sent_starts=[r[4] for r in rows],
    )


def flat_doc(text_words, sent_starts=None, pos=None) -> Doc:
    """A doc whose every token hangs off the first token of its sentence."""
    n = len(text_words)
    starts = sent_starts or [i == 0 for i in range(n)]
    heads, root = [], 0
    for i in range(n):
        if starts[i]:
            root = i
        heads.append(root)
    return Doc(
        VOCAB,
        words=text_words,
        heads=heads,
        deps=["ROOT" if h == i else "dep" for i, h in enumerate(heads)],
        sent_starts=starts,
        pos=pos or ["X"] * n,
    )


def test_words_and_length_features():
    doc = doc_cat_chased()
    # 14 tokens, 2 of them full stops: 12 words in 2 sentences.
    assert [t.text for t in F.words(doc)][:3] == ["The", "cat", "was"]
    values = F.length_features(doc)
    assert values["word_count"] == 12
    assert values["avg_sentence_length"] == 6.0
    # lowercased: the cat was chased by dogs it ran because it was scared -> 10 distinct
    assert values["ttr"] == pytest.approx(10 / 12)
    # 3+3+3+6+2+4 + 2+3+7+2+3+6 letters
    assert values["avg_word_length"] == pytest.approx(44 / 12)


def test_syntax_features():
    doc = doc_cat_chased()
    # sentence 1: The -> cat -> chased is 2 arcs; sentence 2: because/it/was -> scared -> ran is 2
    assert F.parse_tree_depth(doc) == 2.0
    assert F.clause_count(doc) == 1  # scared/advcl
    assert F.passive_ratio(doc) == pytest.approx(2 / 3)  # 2 auxpass, 3 VERB
    # |i - head| for non-roots: 1,2,1,1,1,3 and 1,3,2,1,4,5
    assert F.dep_distance(doc) == pytest.approx(25 / 12)
    assert F.connective_diversity(doc) == 1.0  # "because" once


def test_connectives_phrases_and_repeats():
    words = "However , it rained . However , on the other hand we stayed because we could".split()
    doc = flat_doc(words)
    # however x2, on the other hand x1, because x1: 3 distinct of 4 found
    assert sorted(F.syntax.find_connectives(doc)) == [
        "because",
        "however",
        "however",
        "on the other hand",
    ]
    assert F.connective_diversity(doc) == pytest.approx(3 / 4)
    assert F.connective_diversity(flat_doc(["No", "links", "here"])) == 0.0


def test_readability_formulas_with_given_syllables():
    doc = doc_cat_chased()
    # one syllable per word except "because" (2): 13 syllables, no word of 3+ syllables
    syllables = {"because": 2}
    values = F.readability(doc, syllables=lambda w: syllables.get(w.lower(), 1))
    assert values["flesch_kincaid"] == pytest.approx(0.39 * 6 + 11.8 * 13 / 12 - 15.59)
    assert values["smog"] == pytest.approx(3.1291)
    assert values["coleman_liau"] == pytest.approx(0.0588 * 4400 / 12 - 0.296 * 200 / 12 - 15.8)
    assert values["ari"] == pytest.approx(4.71 * 44 / 12 + 0.5 * 6 - 21.43)


def test_smog_counts_polysyllables_for_short_texts():
    doc = flat_doc(["Beautiful", "information", "is", "nice"])
    values = F.readability(
        doc, syllables=lambda w: {"beautiful": 3, "information": 4}.get(w.lower(), 1)
    )
    # 2 polysyllables in 1 sentence: 1.0430 * sqrt(2 * 30 / 1) + 3.1291, not NaN
    assert values["smog"] == pytest.approx(1.0430 * math.sqrt(60) + 3.1291)


def test_syllables_from_cmu_with_pyphen_fallback():
    assert F.count_syllables("cat") == 1
    assert F.count_syllables("computer") == 3
    assert F.count_syllables("Information") == 4
    assert F.count_syllables("project") == 2  # pyphen alone says 1
    assert F.count_syllables("computerz") >= 2  # not in CMU: pyphen fallback


def test_empty_doc_gives_zeros_not_nan():
    doc = Doc(VOCAB, words=[])
    assert F.length_features(doc) == {
        "avg_sentence_length": 0.0,
        "ttr": 0.0,
        "word_count": 0,
        "avg_word_length": 0.0,
    }
    assert set(F.readability(doc).values()) == {0.0}
    assert F.parse_tree_depth(doc) == 0.0 and F.dep_distance(doc) == 0.0
    assert F.lexical_overlap(doc) == 0.0 and F.pronoun_noun_ratio(doc) == 0.0


def test_paragraphs_split_on_blank_lines():
    text = "  First para\nstill first.\n\n \t\nSecond para.\n\nThird\n\n\n"
    assert F.split_paragraphs(text) == ["First para\nstill first.", "Second para.", "Third"]
    start, end = F.paragraph_spans(text)[1]
    assert text[start:end] == "Second para."
    assert F.split_paragraphs("One line\nanother line") == ["One line\nanother line"]
    assert F.split_paragraphs(" \n\n ") == []


def test_structure_features():
    doc = doc_cat_chased()
    assert F.lexical_overlap(doc) == pytest.approx(1 / 10)  # {was} of 10 distinct words
    assert F.pronoun_noun_ratio(doc) == 1.0  # It, it / cat, dogs
    values = F.structure_features(doc)
    assert values["paragraph_count"] == 1
    assert values["has_intro"] is False  # 12 words < 30
    assert values["has_conclusion"] is False


def test_intro_counts_words_of_first_paragraph_only():
    first = ["w"] * 30
    words = [*first, "\n\n", "tail", "."]
    doc = Doc(VOCAB, words=words, spaces=[True] * 29 + [False, False, False, False])
    spans = F.paragraph_spans(doc.text)
    assert F.structure.words_per_paragraph(doc, spans) == [30, 1]
    assert F.has_intro([30, 1]) and not F.has_intro([29, 40]) and not F.has_intro([])


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("In conclusion, computers help.", True),
        ("To sum up: balance matters.", True),
        ("Overall it is good.", True),
        ("The overallocation of time is bad.", False),
        ("Computers help.", False),
    ],
)
def test_has_conclusion_markers(last, expected):
    assert F.has_conclusion(["Intro here.", last]) is expected


def test_conclusion_only_in_last_paragraph():
    assert F.has_conclusion(["In conclusion, first.", "Then more."]) is False


def test_similarity_features():
    assert F.cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert F.cosine(np.zeros(2), np.ones(2)) == 0.0
    # pair cosines 0, 1/sqrt2, 1/sqrt2 -> population variance 2 * (1/2) / 9
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert F.pairwise_similarity_variance(vectors) == pytest.approx(1 / 9)
    assert F.pairwise_similarity_variance(vectors[:1]) == 0.0
    essay, prompt = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    paragraphs = np.array([[1.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    values = F.prompt_features(essay, paragraphs, prompt)
    assert values["prompt_similarity"] == 0.0
    assert values["intro_prompt_sim"] == pytest.approx(1 / math.sqrt(2))
    assert values["min_para_relevance"] == 0.0
    assert set(F.prompt_features(essay, paragraphs, None).values()) == {None}


@pytest.mark.parametrize(
    ("rule", "category", "name", "kind"),
    [
        ("COMMA_PARENTHESIS_WHITESPACE", "PUNCTUATION", "Punctuation", "punctuation"),
        ("UNPAIRED_BRACKETS", "PUNCTUATION", "Punctuation", "punctuation"),
        ("EN_UNPAIRED_QUOTES", "TYPOGRAPHY", "Typography", "grammar"),
        ("MISSING_COMMA_PUNCT", "GRAMMAR", "Grammar", "punctuation"),
        ("MORFOLOGIK_RULE_EN_US", "TYPOS", "Possible Typo", "spelling"),
        ("SOME_RULE", "MISC", "Spelling", "spelling"),
        ("EN_A_VS_AN", "MISC", "Miscellaneous", "grammar"),
        ("HE_VERB_AGR", "GRAMMAR", "Grammar", "grammar"),
    ],
)
def test_classify_match(rule, category, name, kind):
    assert F.classify_match(rule, category, name) == kind


def test_error_rates_per_100_words():
    counts = {"grammar_errors": 3, "spelling_errors": 1, "punctuation_errors": 0}
    assert F.error_rates(counts, 150) == {
        "grammar_errors_per_100_words": 2.0,
        "spelling_errors_per_100_words": pytest.approx(100 / 150),
        "punctuation_errors_per_100_words": 0.0,
    }
    assert set(F.error_rates(counts, 0).values()) == {0.0}
