"""TokenizeStage: fast-tokenizer token ids of each essay, cut into overlapping chunks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import pyarrow as pa

from hemma_features.chunking import chunk_spans
from hemma_features.config import Config
from hemma_features.stages.base import Stage, StageOutput, StageResources, empty_columns
from hemma_features.stages.embedding_stage import resolve_model_ref

log = logging.getLogger(__name__)


def load_tokenizer(name_or_path: str):
    """``AutoTokenizer`` (fast when the model has one) from a hub name, folder or package."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(name_or_path), use_fast=True)
    except Exception as exc:
        raise ValueError(f"cannot load tokenizer {name_or_path!r}: {exc}") from exc
    if not tokenizer.is_fast:
        log.warning("tokenizer %s has no fast version; tokenizing will be slower", name_or_path)
    # We cut long essays ourselves; silence "sequence longer than model_max_length".
    tokenizer.model_max_length = 1 << 30
    return tokenizer


def special_token_template(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sequence.

    Read off a probe text rather than through ``build_inputs_with_special_tokens``, which
    not every tokenizer class has (transformers 5's fast-only classes lack it).
    """
    probe = tokenizer("essay", add_special_tokens=False)["input_ids"]
    full = tokenizer("essay", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(probe) + 1):
        if full[start : start + len(probe)] == probe:
            return list(full[:start]), list(full[start + len(probe) :])
    raise ValueError(f"cannot find where {type(tokenizer).__name__} puts its special tokens")


class TokenizeStage(Stage):
    """Emits ``n_tokens`` (content tokens, no specials) and ``chunk_input_ids``: the
    essay's chunks, each wrapped in the model's special tokens."""

    name = "tokenize"

    def __init__(self, config: Config, features: Iterable[str] | None = None) -> None:
        super().__init__(config, None)  # feature groups do not apply to this job
        training = config.training
        self.tokenizer = load_tokenizer(training.tokenizer or config.embedding.model)
        self.prefix, self.suffix = special_token_template(self.tokenizer)
        self.specials = len(self.prefix) + len(self.suffix)
        self.window = training.max_length - self.specials
        chunk_spans(0, self.window, training.overlap)  # validates window and overlap early
        self.output_types = {
            "n_tokens": pa.int32(),
            "chunk_input_ids": pa.list_(pa.list_(pa.int32())),
        }

    @classmethod
    def resources(cls, config: Config) -> StageResources:
        training = config.training
        return StageResources(
            actors=training.actors, num_cpus=training.cpus_per_actor, num_gpus=0.0
        )

    @classmethod
    def needed_for(cls, features: Iterable[str]) -> bool:
        return False  # a job of its own, not a feature group

    def versions(self) -> dict[str, str | None]:
        import transformers

        return {
            "transformers": transformers.__version__,
            "tokenizer": self.config.training.tokenizer or self.config.embedding.model,
            "tokenizer_path": self.tokenizer.name_or_path,
            "tokenizer_class": type(self.tokenizer).__name__,
            "special_tokens_per_chunk": self.specials,
        }

    def process(self, batch: pa.Table, rows: Sequence[int]) -> StageOutput:
        texts = batch["text"].to_pylist()
        columns = empty_columns(self.output_types, batch.num_rows)
        encoded = self.tokenizer(
            [texts[i] for i in rows],
            add_special_tokens=False,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        overlap = self.config.training.overlap
        for row, ids in zip(rows, encoded, strict=True):
            columns["n_tokens"][row] = len(ids)
            columns["chunk_input_ids"][row] = [
                [*self.prefix, *ids[start:end], *self.suffix]
                for start, end in chunk_spans(len(ids), self.window, overlap)
            ]
        return StageOutput(columns, {})
