"""Overlapping token windows for essays longer than a model's input (pure, no I/O)."""

from __future__ import annotations


def chunk_spans(n_tokens: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans over ``n_tokens`` content tokens.

    Windows of ``window`` tokens advance by ``window - overlap``; consecutive windows share
    exactly ``overlap`` tokens; the last window ends at the last token (and may be shorter);
    a text that fits gives one span; a text without tokens gives none.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 token, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(
            f"overlap must be in [0, {window}) for a window of {window}, got {overlap}"
        )
    stride = window - overlap
    spans = []
    start = 0
    while start < n_tokens:
        end = min(start + window, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            break
        start += stride
    return spans
