"""Configuration: pydantic models, YAML files and environment overrides.

A config is built in three layers, later ones winning:

1. the model defaults below,
2. a YAML file (``load_config("local")`` finds ``configs/local.yaml``; any path works too),
3. environment variables: ``HEMMA_FEATURES__<SECTION>__<KEY>`` (e.g.
   ``HEMMA_FEATURES__EMBEDDING__BATCH_SIZE=64``) and the old offload server's knob names
   (``OFFLOAD_EMBEDDING_BATCH_SIZE`` …, see :data:`LEGACY_ENV`).

An invalid value fails at load with a :class:`ConfigError` that names the key, the value,
where it came from and what is allowed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "HEMMA_FEATURES__"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Old offload-server environment variables and the config key each one sets.
LEGACY_ENV: dict[str, str] = {
    "OFFLOAD_EMBEDDING_BATCH_SIZE": "embedding.batch_size",
    "OFFLOAD_EMBEDDING_MAX_LENGTH": "embedding.max_length",
    "OFFLOAD_EMBEDDING_MODEL_NAME": "embedding.model",
    "OFFLOAD_TORCH_DEVICE": "embedding.device",
    "OFFLOAD_SPACY_N_PROCESS": "spacy.actors",
    "OFFLOAD_SPACY_PIPE_BATCH_SIZE": "spacy.batch_size",
    "OFFLOAD_LANGUAGE_TOOL_MAX_CONCURRENCY": "languagetool.actors",
    "LANGUAGE_TOOL_SERVICE_LANGUAGE_TOOL_HEAP_SIZE": "languagetool.heap_size",
    "OFFLOAD_LANGUAGE_TOOL_URL": "languagetool.url",
    "OFFLOAD_HTTP_MAX_WORKERS": "pipeline.max_in_flight_batches",
}


class ConfigError(ValueError):
    """A config file or override is missing, unreadable or holds an invalid value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClusterConfig(_Section):
    """Where Ray runs. ``address``: ``local`` (embedded), ``auto`` or ``ray://host:port``."""

    address: str = "local"
    namespace: str = "hemma_features"
    # Sizes of an embedded local Ray; ``None`` lets Ray detect them.
    num_cpus: int | None = Field(default=None, ge=1)
    num_gpus: int | None = Field(default=None, ge=0)
    object_store_memory_mb: int | None = Field(default=None, ge=75)

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        if value in ("local", "auto") or value.startswith("ray://") or ":" in value:
            return value
        raise ValueError("must be 'local', 'auto', 'ray://HOST:PORT' or 'HOST:PORT'")


class PipelineConfig(_Section):
    """Run-wide limits."""

    # Rows per block: what each stage actor gets per call, the unit of retry and of
    # progress (the first two blocks of a run are smaller so results start sooner).
    block_rows: int = Field(default=64, ge=1)
    # Batches queued on each stage actor at once (the old server's HTTP worker count).
    max_in_flight_batches: int = Field(default=4, ge=1)
    # Longer texts are not processed: the row comes back with ``error`` set.
    max_text_chars: int = Field(default=100_000, ge=1)


class EmbeddingConfig(_Section):
    """Transformer embeddings (essay, sentences, paragraphs, prompts)."""

    # A hub name, a local folder, or ``package:MODULE/SUBDIR`` for a model folder shipped
    # inside an installed Python package (offline models).
    model: str = "microsoft/deberta-v3-base"
    revision: str | None = None
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = Field(default=512, ge=8, le=8192)
    # Most texts per forward pass, and most (padded) tokens per forward pass.
    batch_size: int = Field(default=32, ge=1)
    max_tokens_per_batch: int = Field(default=16_384, ge=8)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    actors: int = Field(default=1, ge=1)
    gpus_per_actor: float = Field(default=0.0, ge=0.0)
    cpus_per_actor: float = Field(default=1.0, ge=0.0)
    # Torch intra-op threads in each actor; 0 leaves torch's default.
    torch_threads: int = Field(default=0, ge=0)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        base = value.split(":", 1)[0]
        if base in ("auto", "cpu", "cuda", "mps"):
            return value
        raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (ROCm GPUs are 'cuda')")


class SpacyConfig(_Section):
    """The spaCy parse behind tier 1 length/readability, tier 2 syntax and tier 3."""

    model: str = "en_core_web_sm"
    batch_size: int = Field(default=32, ge=1)
    actors: int = Field(default=1, ge=1)
    cpus_per_actor: float = Field(default=1.0, gt=0.0)


class LanguageToolConfig(_Section):
    """Grammar, spelling and punctuation error rates (tier 1)."""

    language: str = "en-US"
    # An existing LanguageTool HTTP server; ``None`` starts one server per actor.
    url: str | None = None
    on_unavailable: Literal["error", "skip"] = "error"
    actors: int = Field(default=1, ge=1)
    # The actor itself only waits on HTTP; the checking happens in the Java server. Reserve
    # CPUs here for a server the actor starts, none for a shared one at ``url``.
    cpus_per_actor: float = Field(default=1.0, ge=0.0)
    # Parallel /v2/check requests per actor (the server checks them on its own threads).
    requests_per_actor: int = Field(default=4, ge=1)
    heap_size: str = "2g"
    # The server's own speed settings (its --config properties).
    pipeline_caching: bool = True
    max_pipeline_pool_size: int = Field(default=500, ge=1)
    pipeline_expire_time_s: int = Field(default=3600, ge=1)
    cache_size: int = Field(default=1000, ge=0)
    max_check_threads: int = Field(default=4, ge=1)
    max_text_length: int = Field(default=100_000, ge=1)
    request_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)

    @field_validator("heap_size")
    @classmethod
    def _java_size(cls, value: str) -> str:
        text = str(value).strip().lower()
        if (text[:-1].isdigit() and text[-1] in "kmg") or text.isdigit():
            return text
        raise ValueError("must be a Java heap size such as '512m' or '4g'")


class TrainingDataConfig(_Section):
    """Tokenized, chunked training data for transformer fine-tuning (G3)."""

    # A hub name, folder or ``package:`` reference; ``None`` uses embedding.model's.
    tokenizer: str | None = None
    max_length: int = Field(default=512, ge=4)
    overlap: int = Field(default=128, ge=0)
    actors: int = Field(default=1, ge=1)
    cpus_per_actor: float = Field(default=1.0, gt=0.0)
    # Essays per tokenize call: tokenizing is cheap, so blocks are larger than for features.
    block_rows: int = Field(default=512, ge=1)
    rows_per_shard: int = Field(default=100_000, ge=1)


class CacheConfig(_Section):
    """The result cache (see :mod:`hemma_features.cache`): one on this machine, one on the
    cluster. Keys cover everything that changes values, never throughput settings."""

    enabled: bool = True
    # This machine's cache; ``None``: ~/.cache/hemma_features/results ($XDG_CACHE_HOME honoured).
    dir: str | None = None
    # The cluster's cache, a path on the cluster (on Hemma, a mounted volume); ``None``: the
    # same default, resolved for the user the cluster runs as.
    cluster_dir: str | None = None
    # New rows are written every so many rows or seconds, so a crashed run keeps its work.
    flush_rows: int = Field(default=256, ge=1)
    flush_s: float = Field(default=10.0, gt=0.0)


class RunsConfig(_Section):
    """Detached runs: where the cluster keeps their results, and for how long."""

    # A path on the cluster; ``None``: ~/.cache/hemma_features/runs of the cluster's user.
    dir: str | None = None
    # Finished (done, failed or cancelled) runs older than this are deleted.
    retention_days: float = Field(default=7.0, gt=0.0)


class Config(_Section):
    """The whole configuration. Sections mirror the Ray pipeline's parts."""

    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    spacy: SpacyConfig = Field(default_factory=SpacyConfig)
    languagetool: LanguageToolConfig = Field(default_factory=LanguageToolConfig)
    training: TrainingDataConfig = Field(default_factory=TrainingDataConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)

    def value_affecting(self) -> dict[str, Any]:
        """The settings that change feature values (and so the fingerprint).

        Actor counts, batch sizes and addresses change speed, not values, and are left out.
        """
        emb = self.embedding
        return {
            "embedding": {
                "model": emb.model,
                "revision": emb.revision,
                "pooling": emb.pooling,
                "max_length": emb.max_length,
                "dtype": emb.dtype,
            },
            "spacy": {"model": self.spacy.model},
            "languagetool": {"language": self.languagetool.language},
            "pipeline": {"max_text_chars": self.pipeline.max_text_chars},
        }


def resolve_config_path(path_or_name: str | os.PathLike[str]) -> Path:
    """Find a config: an existing path, or a bundled name such as ``local`` or ``hemma``."""
    candidate = Path(path_or_name)
    if candidate.is_file():
        return candidate
    bundled = CONFIG_DIR / f"{path_or_name}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(path_or_name)!r} not found: not a file, nor one of {names}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Config keys set by the environment: ``{dotted_key: (value, variable_name)}``.

    The prefixed form wins over an old knob naming the same key.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    for var, key in LEGACY_ENV.items():
        if var in environ:
            found[key] = (environ[var], var)
    for var, value in environ.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            key = var[len(ENV_PREFIX) :].lower().replace("__", ".")
            found[key] = (value, var)
    return found


def _parse_env_value(text: str) -> Any:
    # YAML scalars give "64" -> 64, "true" -> True, "null" -> None, like the config file.
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def _explain(error: ValidationError, sources: dict[str, str]) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        source = sources.get(key, "config")
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (from {source})")
            continue
        lines.append(f"  {key} = {item.get('input')!r} (from {source}): {item['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def build_config(
    data: Mapping[str, Any] | None = None,
    *,
    source: str = "config",
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a config dict after applying environment overrides."""
    # Env overrides are merged by hand: pydantic-settings cannot give one nested key two
    # variable names (ours and the old knob) and still say which one held a bad value.
    tree: dict[str, Any] = copy.deepcopy(dict(data or {}))
    sources: dict[str, str] = {}
    for key, (value, var) in env_overrides(environ).items():
        _set_dotted(tree, key, _parse_env_value(value))
        sources[key] = f"environment variable {var}"
    for key in _dotted_keys(tree):
        sources.setdefault(key, source)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None


def load_config(
    path_or_name: str | os.PathLike[str] | Config | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load a config from YAML (a path or a bundled name), then apply the environment.

    ``None`` gives the embedded default (``local``). A :class:`Config` is returned as is.
    """
    if isinstance(path_or_name, Config):
        return path_or_name
    path = resolve_config_path(path_or_name or "local")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return build_config(data, source=str(path), environ=environ)


def _dotted_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys
