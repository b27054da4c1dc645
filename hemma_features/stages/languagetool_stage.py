"""LanguageToolStage: grammar, spelling and punctuation error rates from LanguageTool."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from hemma_features.config import Config, LanguageToolConfig
from hemma_features.features.errors import classify_matches, error_rates
from hemma_features.schema import LANGUAGETOOL_COLUMNS, TIER1, feature_type
from hemma_features.stages.base import Stage, StageOutput, StageResources, empty_columns

log = logging.getLogger(__name__)


class LanguageToolUnavailable(RuntimeError):
    """No LanguageTool server could be started or reached."""


class TextRefused(ValueError):
    """LanguageTool answered 4xx: it will not check this text (too long, bad request …)."""


class TransientFailure(RuntimeError):
    """A 5xx answer, a timeout or a dropped connection, still failing after the retries."""


def server_properties(config: LanguageToolConfig) -> dict[str, Any]:
    """The server's ``--config`` properties that set its speed and limits."""
    return {
        "pipelineCaching": config.pipeline_caching,
        "maxPipelinePoolSize": config.max_pipeline_pool_size,
        "pipelineExpireTimeInSeconds": config.pipeline_expire_time_s,
        "cacheSize": config.cache_size,
        "maxCheckThreads": config.max_check_threads,
        "maxTextLength": config.max_text_length,
    }


def open_languagetool(config: LanguageToolConfig):
    """A ``language_tool_python.LanguageTool`` on ``config.url``, or on a server it starts.

    language-tool-python checks the language against the server's ``/v2/languages``.
    """
    import language_tool_python

    if config.url:
        try:
            return language_tool_python.LanguageTool(config.language, remote_server=config.url)
        except Exception as exc:
            raise LanguageToolUnavailable(
                f"LanguageTool server at {config.url} is not answering "
                f"(GET {config.url.rstrip('/')}/v2/languages failed: {exc}). "
                "Start it, fix languagetool.url / OFFLOAD_LANGUAGE_TOOL_URL, "
                "or set languagetool.on_unavailable: skip."
            ) from exc
    # language-tool-python has no heap option; the JVM reads JAVA_TOOL_OPTIONS at start.
    options = [
        o for o in os.environ.get("JAVA_TOOL_OPTIONS", "").split() if not o.startswith("-Xmx")
    ]
    os.environ["JAVA_TOOL_OPTIONS"] = " ".join([*options, f"-Xmx{config.heap_size}"])
    try:
        return language_tool_python.LanguageTool(config.language, config=server_properties(config))
    except Exception as exc:
        raise LanguageToolUnavailable(
            f"could not start a local LanguageTool server ({type(exc).__name__}: {exc}). "
            "It needs Java and a LanguageTool download (or its cache); set languagetool.url "
            "to use a running server, or languagetool.on_unavailable: skip."
        ) from exc


class LanguageToolClient:
    """``POST /v2/check`` with status-aware retries.

    language-tool-python's own ``check`` turns every failure into one exception type and
    retries at once without backoff, so a refused text (4xx, never worth retrying) cannot be
    told from an overloaded server (5xx, worth retrying later); this client sees the status.
    """

    def __init__(self, base_url: str, config: LanguageToolConfig) -> None:
        import requests

        self.check_url = base_url.rstrip("/") + "/check"
        self.config = config
        self.session = requests.Session()

    def check(self, text: str) -> list[dict[str, Any]]:
        import requests

        cfg = self.config
        data = {"text": text, "language": cfg.language}
        last: str = ""
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.session.post(
                    self.check_url, data=data, timeout=cfg.request_timeout_s
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                return response.json()["matches"]
            body = response.text.strip()[:300]
            if 400 <= response.status_code < 500:
                raise TextRefused(
                    f"LanguageTool refused the text: HTTP {response.status_code}: {body}"
                )
            last = f"HTTP {response.status_code}: {body}"
        raise TransientFailure(
            f"LanguageTool at {self.check_url} still failing after {cfg.max_retries} retries: {last}"
        )

    def close(self) -> None:
        self.session.close()


class LanguageToolStage(Stage):
    """Checks each essay with LanguageTool and emits the three error rates per 100 words and
    the raw counts. Needs the ``word_count`` column of the spaCy stage."""

    name = "languagetool"

    def __init__(self, config: Config, features: Iterable[str] | None = None) -> None:
        super().__init__(config, features)
        cfg = config.languagetool
        self.output_types = {n: feature_type(n) for n in LANGUAGETOOL_COLUMNS}
        self.tool = None
        self.client: LanguageToolClient | None = None
        self.unavailable_reason: str | None = None
        try:
            self.tool = open_languagetool(cfg)
            self.client = LanguageToolClient(self.tool.url, cfg)
        except LanguageToolUnavailable as exc:
            if cfg.on_unavailable == "error":
                raise
            self.unavailable_reason = str(exc)
            log.warning("LanguageTool skipped, its columns will be null: %s", exc)
        self._pool = ThreadPoolExecutor(max_workers=cfg.requests_per_actor)

    @classmethod
    def resources(cls, config: Config) -> StageResources:
        lt = config.languagetool
        return StageResources(actors=lt.actors, num_cpus=lt.cpus_per_actor, num_gpus=0.0)

    @classmethod
    def needed_for(cls, features: Iterable[str]) -> bool:
        return TIER1 in set(features)

    def versions(self) -> dict[str, str | None]:
        import language_tool_python

        return {
            "language_tool_python": getattr(language_tool_python, "__version__", None),
            "languagetool_server": None if self.tool is None else self.tool.url,
        }

    def process(self, batch: pa.Table, rows: Sequence[int]) -> StageOutput:
        columns = empty_columns(self.output_types, batch.num_rows)
        if self.client is None:
            return StageOutput(columns, {})
        if "word_count" not in batch.column_names:
            raise ValueError("LanguageToolStage needs the spaCy stage's word_count column first")
        texts = batch["text"].to_pylist()
        word_counts = batch["word_count"].to_pylist()
        futures = {row: self._pool.submit(self.client.check, texts[row]) for row in rows}
        errors: dict[int, str] = {}
        for row, future in futures.items():
            try:
                counts = classify_matches(future.result())
            except Exception as exc:
                errors[row] = self.row_error(batch, row, exc)
                continue
            values = {**counts, **error_rates(counts, word_counts[row] or 0)}
            for name in self.output_types:
                columns[name][row] = values[name]
        return StageOutput(columns, errors)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        if self.client is not None:
            self.client.close()
        if self.tool is not None:
            self.tool.close()
            self.tool = None
