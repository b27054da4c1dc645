"""EmbeddingStage: batched transformer embeddings and the similarity features."""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from hemma_features.config import Config, EmbeddingConfig
from hemma_features.features import pairwise_similarity_variance, prompt_features
from hemma_features.schema import EMBEDDINGS, SIMILARITY_FEATURES, TIER2, feature_type
from hemma_features.stages.base import Stage, StageOutput, StageResources, empty_columns

log = logging.getLogger(__name__)
PACKAGE_SCHEME = "package:"
_PROMPT_CACHE_SIZE = 256


def resolve_model_ref(ref: str) -> str:
    """A hub name, a local folder, or ``package:MODULE/SUBDIR`` — a model folder shipped
    inside an installed Python package — turned into what ``from_pretrained`` accepts."""
    if not ref.startswith(PACKAGE_SCHEME):
        return ref
    module_name, _, subdir = ref[len(PACKAGE_SCHEME) :].partition("/")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"embedding.model {ref!r}: package {module_name!r} is not installed ({exc})"
        ) from None
    folder = Path(module.__file__).resolve().parent / subdir
    if not (folder / "config.json").is_file():
        raise ValueError(f"embedding.model {ref!r}: no model folder at {folder}")
    return str(folder)


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"embedding.device={requested!r} but torch sees no GPU "
            "(on ROCm check HIP_VISIBLE_DEVICES and that torch.version.hip is set)"
        )
    return requested


def pick_dtype(requested: str, device: str):
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def length_batches(lengths: Sequence[int], max_items: int, max_tokens: int) -> list[list[int]]:
    """Group indices into batches of similar length.

    Longest first (an out-of-memory shows up at once), at most ``max_items`` per batch and at
    most ``max_tokens`` padded tokens (items × longest item) per batch; a single text longer
    than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) >= max_items or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class TextEncoder:
    """A tokenizer and model that turn texts into pooled float32 vectors."""

    def __init__(self, config: EmbeddingConfig) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        path = resolve_model_ref(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=config.revision)
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.dtype, self.device)
        # Load in full precision, then cast: loading DeBERTa-v2 directly in bf16 has failed
        # in some transformers versions.
        model = AutoModel.from_pretrained(path, revision=config.revision)
        self.model = model.to(self.device).to(self.dtype).eval()
        self.dim = int(self.model.config.hidden_size)
        self.revision = getattr(self.model.config, "_commit_hash", None) or config.revision

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, in the order of ``texts``; duplicates are encoded once."""
        import torch

        unique = list(dict.fromkeys(texts))
        out = np.zeros((len(unique), self.dim), dtype=np.float32)
        if unique:
            encoded = self.tokenizer(
                unique, truncation=True, max_length=self.config.max_length, padding=False
            )
            names = [n for n in self.tokenizer.model_input_names if n in encoded]
            lengths = [len(ids) for ids in encoded["input_ids"]]
            batches = length_batches(
                lengths, self.config.batch_size, self.config.max_tokens_per_batch
            )
            with torch.inference_mode():
                for batch in batches:
                    features = [{n: encoded[n][i] for n in names} for i in batch]
                    padded = self.tokenizer.pad(features, return_tensors="pt")
                    padded = {k: v.to(self.device) for k, v in padded.items()}
                    hidden = self.model(**padded).last_hidden_state
                    pooled = self._pool(hidden, padded["attention_mask"])
                    out[batch] = pooled.float().cpu().numpy()
        position = {text: i for i, text in enumerate(unique)}
        return out[[position[t] for t in texts]]

    def _pool(self, hidden, mask):
        if self.config.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class EmbeddingStage(Stage):
    """Embeds essays, sentences, paragraphs and prompts in one length-sorted pass and emits
    ``embedding`` (when embeddings are selected) and the four similarity features (tier 2)."""

    name = "embedding"

    def __init__(self, config: Config, features: Iterable[str] | None = None) -> None:
        super().__init__(config, features)
        self.encoder = TextEncoder(config.embedding)
        self.output_types: dict[str, pa.DataType] = {}
        if EMBEDDINGS in self.features:
            self.output_types["embedding"] = pa.list_(pa.float32(), self.encoder.dim)
        if TIER2 in self.features:
            self.output_types.update({n: feature_type(n) for n in SIMILARITY_FEATURES})
        self._prompt_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @classmethod
    def resources(cls, config: Config) -> StageResources:
        emb = config.embedding
        return StageResources(
            actors=emb.actors,
            num_cpus=emb.cpus_per_actor,
            num_gpus=emb.gpus_per_actor,
        )

    @classmethod
    def needed_for(cls, features: Iterable[str]) -> bool:
        return bool({EMBEDDINGS, TIER2} & set(features))

    def versions(self) -> dict[str, str | None]:
        import torch
        import transformers

        return {
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "embedding_revision": self.encoder.revision,
            "embedding_dtype": str(self.encoder.dtype).removeprefix("torch."),
        }

    def prompt_vectors(self, prompts: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors of the distinct prompts, each encoded once and kept for later batches."""
        wanted = list(dict.fromkeys(prompts))
        missing = [p for p in wanted if p not in self._prompt_cache]
        for prompt, vector in zip(missing, self.encoder.encode(missing), strict=True):
            self._prompt_cache[prompt] = vector
        while len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
            self._prompt_cache.popitem(last=False)
        return {p: self._prompt_cache[p] for p in wanted}

    def process(self, batch: pa.Table, rows: Sequence[int]) -> StageOutput:
        texts = batch["text"].to_pylist()
        prompts = batch["prompt"].to_pylist() if "prompt" in batch.column_names else []
        prompts = prompts or [None] * batch.num_rows
        similarity = TIER2 in self.features
        sentences = batch["sentences"].to_pylist() if similarity else None
        paragraphs = batch["paragraphs"].to_pylist() if similarity else None

        # Everything in this batch goes through the model in one length-sorted pass.
        queue: list[str] = [texts[i] for i in rows]
        spans: dict[int, dict[str, slice]] = {}
        for row in rows:
            spans[row] = {}
            if similarity:
                for key, lists in (("sentences", sentences), ("paragraphs", paragraphs)):
                    items = lists[row] or []
                    spans[row][key] = slice(len(queue), len(queue) + len(items))
                    queue.extend(items)
        vectors = self.encoder.encode(queue)
        prompt_vecs = (
            self.prompt_vectors(prompts[i] for i in rows if prompts[i]) if similarity else {}
        )

        columns = empty_columns(self.output_types, batch.num_rows)
        errors: dict[int, str] = {}
        for position, row in enumerate(rows):
            try:
                essay = vectors[position]
                if "embedding" in columns:
                    columns["embedding"][row] = essay
                if similarity:
                    sentence_vecs = vectors[spans[row]["sentences"]]
                    para_vecs = vectors[spans[row]["paragraphs"]]
                    columns["sent_similarity_variance"][row] = pairwise_similarity_variance(
                        sentence_vecs
                    )
                    prompt = prompt_vecs.get(prompts[row]) if prompts[row] else None
                    for name, value in prompt_features(essay, para_vecs, prompt).items():
                        columns[name][row] = value
            except Exception as exc:  # one bad row must not sink the batch
                errors[row] = self.row_error(batch, row, exc)
        return StageOutput(columns, errors)
