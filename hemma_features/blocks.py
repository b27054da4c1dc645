"""How a run's rows are cut into blocks, the same in-process and on Ray.

Embedding vectors depend (below 1e-6) on which texts share a forward pass, so both paths cut
blocks identically and their features come out exactly equal.
"""

from __future__ import annotations

import pyarrow as pa


def ramped_blocks(table: pa.Table, block_rows: int) -> list[pa.Table]:
    """Slice ``table`` into blocks of ``block_rows``, the first two smaller (¼, ½), so the
    first results come back while a pipeline is still filling up."""
    sizes = [max(1, block_rows // 4), max(1, block_rows // 2)]
    blocks, start = [], 0
    while start < table.num_rows:
        size = sizes.pop(0) if sizes else block_rows
        blocks.append(table.slice(start, size))
        start += size
    return blocks or [table]
