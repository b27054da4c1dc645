"""Tokens/s of G3 training-data preparation: the Ray job against one process.

(a) ``session.prepare_training_data`` on an embedded local Ray (tokenize actors from the
    config's ``training`` section), timed from submit to last row, actor start included;
(b) a single-process loop over batches of 256 essays with the same fast tokenizer and the
    same chunking (the way the team's training script prepares data today).

    python benchmarks/tokenize_throughput.py --input ../shared/data/asap_set1_dev.tsv --repeat 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import hemma_features as hf
from hemma_features.chunking import chunk_spans
from hemma_features.inputs import read_table
from hemma_features.stages.tokenize_stage import load_tokenizer, special_token_template

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "asap_set1_dev.tsv"


def replicate(table: pa.Table, times: int, id_column: str) -> pa.Table:
    """``times`` copies with fresh string ids, so the job sees distinct essays."""
    parts = []
    for k in range(times):
        ids = pa.array([f"{v}-{k}" for v in table[id_column].to_pylist()])
        parts.append(table.set_column(table.column_names.index(id_column), id_column, ids))
    return pa.concat_tables(parts)


def single_process(texts: list[str], tokenizer_ref: str, max_length: int, overlap: int) -> dict:
    tokenizer = load_tokenizer(tokenizer_ref)
    prefix, suffix = special_token_template(tokenizer)
    window = max_length - len(prefix) - len(suffix)
    started = time.perf_counter()
    tokens = chunks = 0
    for start in range(0, len(texts), 256):
        encoded = tokenizer(texts[start : start + 256], add_special_tokens=False)["input_ids"]
        for ids in encoded:
            tokens += len(ids)
            chunks += len(
                [[*prefix, *ids[a:b], *suffix] for a, b in chunk_spans(len(ids), window, overlap)]
            )
    elapsed = time.perf_counter() - started
    return {
        "name": "single_process_batched",
        "tokens": tokens,
        "chunks": chunks,
        "elapsed_s": round(elapsed, 2),
        "tokens_per_second": round(tokens / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--repeat", type=int, default=8, help="copies of the input")
    parser.add_argument("--text-column", default="essay")
    parser.add_argument("--id-column", default="essay_id")
    parser.add_argument("--config", default="local")
    parser.add_argument("--tokenizer", default=None, help="default: the config's")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    args = parser.parse_args()

    config = hf.load_config(args.config)
    tokenizer_ref = args.tokenizer or config.training.tokenizer or config.embedding.model
    data = replicate(read_table(args.input), args.repeat, args.id_column)
    base = single_process(
        data[args.text_column].to_pylist(), tokenizer_ref, args.max_length, args.overlap
    )
    with tempfile.TemporaryDirectory() as out, hf.connect("local", config) as session:
        session.prepare_training_data(
            data,
            output_dir=Path(out) / "g3",
            tokenizer=tokenizer_ref,
            max_length=args.max_length,
            overlap=args.overlap,
            id_column=args.id_column,
            text_column=args.text_column,
            progress=False,
        )
        metrics = session.last_metrics
    job = {
        "name": "ray_prepare_training_data_local",
        "actors": config.training.actors,
        "tokens": metrics["tokens"],
        "elapsed_s": metrics["benchmarks"][0]["elapsed_s"],
        "tokens_per_second": metrics["tokens_per_second"],
        "first_result_s": metrics["first_result_s"],
    }
    ratio = job["tokens_per_second"] / base["tokens_per_second"]
    print(f"{data.num_rows} essays, {base['tokens']} tokens, tokenizer {tokenizer_ref}")
    print(f"single process: {base['tokens_per_second']:,.0f} tokens/s ({base['elapsed_s']} s)")
    print(
        f"Ray job:        {job['tokens_per_second']:,.0f} tokens/s ({job['elapsed_s']} s, "
        f"{job['actors']} actor(s), start-up included)"
    )
    print(f"ratio: {ratio:.2f}x")
    print(json.dumps({"single_process": base, "ray": job, "ratio": round(ratio, 3)}, indent=2))


if __name__ == "__main__":
    main()
