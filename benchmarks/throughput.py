"""Throughput: the Ray pipeline on an embedded local Ray against a sequential baseline.

Both run in this one process, one after the other, on the same machine and the same essays:

(a) pipeline: ``hemma_features.connect("local")`` + ``session.extract`` — spaCy and embedding
    actor pools streaming batches through Ray Data; timed from submit to last row, actor
    start-up and model loading included (they happen per run);
(b) baseline: the same stage objects called in-process one batch of 64 essays at a time, as
    the old offload server did; model loading timed separately.

Prints essays/s for both, their ratio, each stage's busy seconds, and pipeline efficiency =
sum of stage busy seconds / (wall seconds × CPUs), then the same as JSON.

    python benchmarks/throughput.py --input ../shared/data/asap_set1_dev.tsv --n 250
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import hemma_features as hf
from hemma_features.inputs import prepare_input, read_table

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "asap_set1_dev.tsv"
# Paraphrase of the ASAP set 1 task, written for this benchmark.
DEFAULT_PROMPT = (
    "Write a letter to your local newspaper stating your opinion on the effects computers "
    "have on people, and convince the readers to agree with you."
)


def baseline(data, config, features, args) -> dict:
    started = time.perf_counter()
    extractor = hf.LocalExtractor(config, features)
    load_s = time.perf_counter() - started
    canonical = prepare_input(
        data, text_column=args.text_column, id_column=args.id_column, prompt=args.prompt
    )
    busy = {stage.name: 0.0 for stage in extractor.stages}
    started = time.perf_counter()
    for start in range(0, canonical.num_rows, 64):
        block = canonical.slice(start, 64)
        for stage in extractor.stages:
            t = time.perf_counter()
            block = stage(block)
            busy[stage.name] += time.perf_counter() - t
    elapsed = time.perf_counter() - started
    extractor.close()
    n = canonical.num_rows
    return {
        "name": "sequential_baseline_batch64",
        "n_essays": n,
        "model_load_s": round(load_s, 2),
        "elapsed_s": round(elapsed, 2),
        "essays_per_second": round(n / elapsed, 3),
        "essays_per_second_incl_load": round(n / (elapsed + load_s), 3),
        "stage_busy_s": {k: round(v, 2) for k, v in busy.items()},
    }


def pipeline(data, config, features, args, address: str = "local") -> dict:
    started = time.perf_counter()
    with hf.connect(address, config) as session:
        connect_s = time.perf_counter() - started
        cpus = session.cluster_resources().get("CPU", os.cpu_count())
        table = session.extract(
            data,
            text_column=args.text_column,
            id_column=args.id_column,
            prompt=args.prompt,
            features=features,
            progress=not args.quiet,
        )
        metrics = session.last_metrics
    bench = metrics["benchmarks"][0]
    busy = {name: s["busy_s"] for name, s in metrics["stages"].items()}
    wall = bench["elapsed_s"]
    return {
        "name": f"ray_pipeline_{address}",
        "n_essays": bench["n_essays"],
        "connect_s": round(connect_s, 2),
        "first_result_s": bench.get("first_result_s") or metrics.get("first_result_s"),
        "elapsed_s": wall,
        "essays_per_second": bench["essays_per_second"],
        "cpus": cpus,
        "stage_busy_s": busy,
        "efficiency": round(sum(busy.values()) / (wall * cpus), 3),
        "rows_with_error": table.num_rows - table["error"].null_count,
        "stages": metrics["stages"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--n", type=int, default=250, help="essays to use (from the top)")
    parser.add_argument("--text-column", default="essay")
    parser.add_argument("--id-column", default="essay_id")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--config", default="local")
    parser.add_argument("--features", default="embeddings,tier2,tier3")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--addresses",
        default="local",
        help="comma-separated Ray addresses to run the pipeline on, one after the other "
        "(e.g. 'auto,ray://127.0.0.1:10001' to price the Ray Client path on one head)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    config = hf.load_config(args.config)
    features = hf.schema.normalize_features(args.features)
    data = read_table(args.input).slice(0, args.n)
    runs = [pipeline(data, config, features, args, a) for a in args.addresses.split(",")]
    if args.skip_baseline:
        for run in runs:
            print(
                f"{run['name']}: {run['essays_per_second']:.2f} essays/s, "
                f"first result after {run['first_result_s']} s, efficiency {run['efficiency']}"
            )
        print(json.dumps({"pipelines": runs}, indent=2))
        return
    base = baseline(data, config, features, args)
    pipe = runs[0]
    ratio = pipe["essays_per_second"] / base["essays_per_second"]
    ratio_incl_load = pipe["essays_per_second"] / base["essays_per_second_incl_load"]
    print(f"\n{pipe['n_essays']} essays, features {','.join(features)}, config {args.config}")
    print(
        f"baseline (batches of 64, in-process): {base['essays_per_second']:.2f} essays/s "
        f"({base['elapsed_s']:.1f} s + {base['model_load_s']:.1f} s model load)"
    )
    print(
        f"pipeline (local Ray, {pipe['cpus']:.0f} CPUs):      {pipe['essays_per_second']:.2f} "
        f"essays/s ({pipe['elapsed_s']:.1f} s, actor start-up included)"
    )
    print(
        f"ratio pipeline/baseline: {ratio:.2f}x (baseline with its model load: "
        f"{ratio_incl_load:.2f}x)"
    )
    for name, seconds in pipe["stage_busy_s"].items():
        print(
            f"  {name:<12} busy {seconds:7.1f} s in the pipeline, "
            f"{base['stage_busy_s'].get(name, 0):7.1f} s in the baseline"
        )
    print(f"pipeline efficiency: {pipe['efficiency']:.2f}")
    result = {
        "baseline": base,
        "pipeline": pipe,
        "ratio": round(ratio, 3),
        "ratio_vs_baseline_incl_load": round(ratio_incl_load, 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
