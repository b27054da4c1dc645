"""Result cache: cold, fully cached and half-cached runs, in one process, one after another.

On an embedded local Ray with empty caches in a temporary folder (this machine's cache and
the cluster's, kept apart as on Hemma), with N essays:

1. cold: the first N/2 essays, every one computed (actor start-up and model loading
   included, as in every run);
2. half-cached: all N essays, the first half seen before: only the second half is computed;
3. cached (this machine): all N again, answered from this machine's cache without
   contacting the cluster (three times; timed from the call to the returned table, input
   preparation included);
4. cached (cluster only): this machine's cache emptied, the cluster's cache answers.

    python benchmarks/cache_throughput.py --input ../shared/data/asap_set1_dev.tsv --n 250
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import hemma_features as hf
from hemma_features.config import load_config
from hemma_features.inputs import read_table

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "asap_set1_dev.tsv"
# Paraphrase of the ASAP set 1 task, written for this benchmark.
DEFAULT_PROMPT = (
    "Write a letter to your local newspaper stating your opinion on the effects computers "
    "have on people, and convince the readers to agree with you."
)


def timed_run(session, data, args) -> dict:
    started = time.perf_counter()
    table = session.extract(
        data,
        text_column=args.text_column,
        id_column=args.id_column,
        prompt=args.prompt,
        features=args.features,
        progress=False,
    )
    elapsed = time.perf_counter() - started
    cache = session.last_metrics["cache"]
    computed = {name: s["rows"] for name, s in session.last_metrics["stages"].items()}
    return {
        "n_essays": table.num_rows,
        "elapsed_s": round(elapsed, 3),
        "essays_per_second": round(table.num_rows / elapsed, 1),
        "hits_this_machine": cache["this_machine"]["hits"],
        "hits_cluster": (cache.get("cluster") or {}).get("hits", 0),
        "rows_computed": max(computed.values(), default=0),
        "cluster_contacted": cache["cluster_contacted"],
        "_table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--n", type=int, default=250, help="essays (from the top)")
    parser.add_argument("--text-column", default="essay")
    parser.add_argument("--id-column", default="essay_id")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--config", default="local")
    parser.add_argument("--features", default="embeddings,tier1,tier2,tier3")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    rows = read_table(args.input).to_pylist()[: args.n]
    half = rows[: len(rows) // 2]

    workdir = Path(tempfile.mkdtemp(prefix="hemma-cache-bench-"))
    config = load_config(args.config)
    config.cache.enabled = True
    config.cache.dir = str(workdir / "this-machine")
    config.cache.cluster_dir = str(workdir / "cluster")
    results = {}
    try:
        with hf.connect("local", config) as session:
            results["cold"] = timed_run(session, half, args)
            results["half_cached"] = timed_run(session, rows, args)
            for i in range(3):
                lazy = hf.connect("local", config, lazy=True)
                results[f"cached_this_machine_{i + 1}"] = timed_run(lazy, rows, args)
            shutil.rmtree(workdir / "this-machine")
            results["cached_cluster_only"] = timed_run(session, rows, args)
        computed = results["half_cached"].pop("_table")
        for name, result in results.items():
            table = result.pop("_table", None)
            if table is not None and name != "cold":
                assert table.equals(computed), f"{name}: not the half-cached run's table"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{len(rows)} essays from {args.input.name}, features {args.features}")
    print(
        f"{'run':<24} {'essays/s':>10} {'seconds':>9} {'computed':>9} {'hits here':>10} "
        f"{'hits cluster':>13}  cluster"
    )
    for name, r in results.items():
        print(
            f"{name:<24} {r['essays_per_second']:>10.1f} {r['elapsed_s']:>9.2f} "
            f"{r['rows_computed']:>9} {r['hits_this_machine']:>10} {r['hits_cluster']:>13}  "
            f"{'contacted' if r['cluster_contacted'] else 'not contacted'}"
        )
    report = {"n_essays": len(rows), "input": str(args.input), "runs": results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
