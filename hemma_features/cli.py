"""The ``hemma-features`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hemma_features.config import ConfigError
from hemma_features.inputs import InputError
from hemma_features.schema import FEATURE_GROUPS, normalize_features, read_metadata

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


def _add_run_options(parser: argparse.ArgumentParser, output_help: str) -> None:
    """Input, output, columns, config, address and reporting: shared by the subcommands."""
    parser.add_argument("input", type=Path, help="essays: .parquet, .csv, .tsv or .jsonl")
    parser.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    parser.add_argument(
        "--config",
        default=None,
        help="YAML config path or bundled name (local, hemma); default: local",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="'local' (embedded Ray), 'auto', 'ray://HOST:PORT', or 'inprocess' (no Ray); "
        "default: the config's cluster.address",
    )
    parser.add_argument(
        "--text-column", default="text", help="column holding the essay (default: text)"
    )
    parser.add_argument("--id-column", default="essay_id", help="id column (default: essay_id)")
    parser.add_argument(
        "--metrics", type=Path, default=None, help="write the run's metrics JSON here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log row warnings")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemma-features",
        description="Essay features (embeddings, spaCy syntax, LanguageTool error rates) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "extract",
        help="compute features for a file of essays and write Parquet",
        description=(
            "Compute features for INPUT (.parquet, .csv, .tsv or .jsonl) and write one row per "
            "input row, in input order, to OUTPUT (Parquet with the schema metadata). Rows that "
            "fail come back with their 'error' column set."
        ),
    )
    _add_run_options(ex, output_help="output .parquet file")
    ex.add_argument(
        "--prompt-column", default="prompt", help="column holding the prompt (default: prompt)"
    )
    ex.add_argument("--prompt", default=None, help="one prompt for every row")
    ex.add_argument(
        "--features",
        default=",".join(FEATURE_GROUPS),
        help=f"comma-separated groups from {','.join(FEATURE_GROUPS)} (default: all)",
    )

    tr = sub.add_parser(
        "prepare-training",
        help="tokenize and chunk essays into Parquet for transformer fine-tuning",
        description=(
            "Tokenize INPUT's essays and cut each into overlapping windows of at most "
            "--max-length tokens (special tokens included). Writes Parquet shards to DIR (one "
            "folder per split; train/ without --split-column) and DIR/coverage.json."
        ),
    )
    _add_run_options(tr, output_help="output folder (new)")
    tr.add_argument(
        "--tokenizer",
        default=None,
        help="hub name, folder or package:MODULE/SUBDIR (default: the config's training."
        "tokenizer, else its embedding.model)",
    )
    tr.add_argument("--max-length", type=int, default=None, help="tokens per chunk (default 512)")
    tr.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="tokens shared by neighbouring chunks (default 128)",
    )
    tr.add_argument("--label-columns", default="", help="comma-separated columns copied to chunks")
    tr.add_argument("--split-column", default=None, help="column whose values name the splits")
    tr.add_argument(
        "--with-features",
        type=Path,
        default=None,
        help="an extract output (.parquet) whose columns are joined onto each chunk by essay_id",
    )
    return parser


def _summary(table, metrics: dict | None, output: Path) -> str:
    meta = read_metadata(table)
    n = table.num_rows
    failed = n - table["error"].null_count
    lines = [
        f"wrote {n} rows to {output} ({failed} with error)",
        f"features: {', '.join(meta['features'])}; fingerprint {meta['fingerprint']}",
    ]
    if metrics:
        bench = metrics["benchmarks"][0]
        lines.append(
            f"{bench['n_essays']} essays in {bench['elapsed_s']:.1f} s "
            f"({bench['essays_per_second']:.2f} essays/s)"
        )
        for stage, values in metrics.get("stages", {}).items():
            lat = values["latency_s"]
            lines.append(
                f"  {stage:<12} actors {values['actors']}  batches {values['batches']:>4}  "
                f"busy {values['busy_s']:8.1f} s  latency mean {lat['mean']:.2f} s  "
                f"p95 {lat['p95']:.2f} s"
            )
    for stage, reason in (meta.get("skipped") or {}).items():
        lines.append(f"skipped {stage}: its columns are null ({reason.splitlines()[0][:200]})")
    if failed:
        errors = table.filter(table["error"].is_valid())
        lines.append("first errors:")
        for row in errors.select(["essay_id", "error"]).slice(0, 5).to_pylist():
            lines.append(f"  {row['essay_id']!r}: {row['error'][:160]}")
    return "\n".join(lines)


def _extract(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    features = normalize_features(args.features)
    if args.output.suffix.lower() != ".parquet":
        raise InputError(f"output must be a .parquet file, got {args.output}")
    if not args.input.is_file():
        raise InputError(f"{args.input}: no such file")
    from hemma_features.config import load_config
    from hemma_features.inputs import prepare_input, read_table

    config = load_config(args.config)
    data = read_table(args.input)
    kwargs = {
        "text_column": args.text_column,
        "prompt_column": args.prompt_column,
        "id_column": args.id_column,
        "prompt": args.prompt,
        "features": features,
    }
    # Check the whole input before any cluster work starts (the run checks it again).
    prepare_input(
        data,
        max_text_chars=config.pipeline.max_text_chars,
        **{k: v for k, v in kwargs.items() if k != "features"},
    )
    metrics = None
    if args.address == "inprocess":
        from hemma_features.local import extract_local

        table = extract_local(data, config, **kwargs)
    else:
        from hemma_features.session import connect

        with connect(args.address, config) as session:
            table = session.extract(data, progress=not args.no_progress, **kwargs)
            metrics = session.last_metrics
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output)
    if args.metrics and metrics is not None:
        args.metrics.parent.mkdir(parents=True, exist_ok=True)
        args.metrics.write_text(json.dumps(metrics, indent=2))
    print(_summary(table, metrics, args.output))
    return 0


def _prepare_training(args: argparse.Namespace) -> int:
    from hemma_features import training_data as td
    from hemma_features.config import load_config
    from hemma_features.inputs import read_table

    if not args.input.is_file():
        raise InputError(f"{args.input}: no such file")
    config = td.training_config(
        load_config(args.config), args.tokenizer, args.max_length, args.overlap
    )
    labels = [c.strip() for c in args.label_columns.split(",") if c.strip()]
    data = read_table(args.input)
    td.prepare_canonical(  # check the whole input before any work
        data,
        id_column=args.id_column,
        text_column=args.text_column,
        label_columns=labels,
        split_column=args.split_column,
        max_text_chars=config.pipeline.max_text_chars,
    )
    kwargs = {
        "output_dir": args.output,
        "id_column": args.id_column,
        "text_column": args.text_column,
        "label_columns": labels,
        "split_column": args.split_column,
        "with_features": args.with_features,
    }
    metrics = None
    if args.address == "inprocess":
        result = td.prepare_training_data_local(data, config=config, **kwargs)
    else:
        from hemma_features.session import connect

        with connect(args.address, config) as session:
            result = session.prepare_training_data(data, progress=not args.no_progress, **kwargs)
            metrics = session.last_metrics
    if args.metrics and metrics is not None:
        args.metrics.parent.mkdir(parents=True, exist_ok=True)
        args.metrics.write_text(json.dumps(metrics, indent=2))
    cov = result.coverage
    counts = cov["counts"]
    print(
        f"wrote {counts['chunks']} chunks of {counts['essays_with_chunks']} essays to "
        f"{result.output_dir} ({len(result.files)} file(s); splits {cov['chunks_per_split']})\n"
        f"{cov['percent_longer_than_max_length']:.1f}% of essays exceed {cov['max_length']} "
        f"tokens; truncation would lose {cov['mean_tokens_lost_by_truncation']:.1f} tokens per "
        f"essay on average; chunks per essay mean {cov['chunks_per_essay']['mean']:.2f}, "
        f"p95 {cov['chunks_per_essay']['p95']:.0f}"
    )
    if metrics:
        print(
            f"{metrics['tokens_per_second']:.0f} tokens/s over {metrics['benchmarks'][0]['elapsed_s']:.1f} s"
        )
    for item in cov["no_chunks"][:5]:
        print(f"  no chunks for {item['essay_id']!r}: {item['reason'][:160]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from hemma_features.session import ConnectError, RunError

    try:
        if args.command == "extract":
            return _extract(args)
        if args.command == "prepare-training":
            return _prepare_training(args)
    except (InputError, ConfigError, ValueError) as exc:
        print(f"hemma-features: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ConnectError, RunError) as exc:
        print(f"hemma-features: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 1


if __name__ == "__main__":
    sys.exit(main())
