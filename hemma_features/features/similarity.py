"""Similarity features over embedding vectors (tier 2)."""

from __future__ import annotations

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 0 when either vector is all zeros."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else 0.0


def pairwise_similarity_variance(vectors: np.ndarray) -> float:
    """Population variance of the cosine similarities of all pairs of vectors (0 below 2)."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        return 0.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    sims = unit @ unit.T
    upper = sims[np.triu_indices(matrix.shape[0], k=1)]
    return float(np.var(upper))


def prompt_features(
    essay: np.ndarray,
    paragraphs: np.ndarray,
    prompt: np.ndarray | None,
) -> dict[str, float | None]:
    """``prompt_similarity``, ``intro_prompt_sim`` and ``min_para_relevance``.

    ``paragraphs`` is [P, D] in essay order. Without a prompt all three are ``None``;
    without paragraphs the paragraph features are 0.
    """
    if prompt is None:
        return {"prompt_similarity": None, "intro_prompt_sim": None, "min_para_relevance": None}
    sims = [cosine(p, prompt) for p in np.asarray(paragraphs)] if len(paragraphs) else []
    return {
        "prompt_similarity": cosine(essay, prompt),
        "intro_prompt_sim": sims[0] if sims else 0.0,
        "min_para_relevance": min(sims) if sims else 0.0,
    }
