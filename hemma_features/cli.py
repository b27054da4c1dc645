"""The ``hemma-features`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hemma_features.cli_common import add_cluster_options, write_result
from hemma_features.cli_ops import add_ops_commands
from hemma_features.config import ConfigError
from hemma_features.inputs import InputError
from hemma_features.schema import FEATURE_GROUPS, normalize_features

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


def _add_run_options(
    parser: argparse.ArgumentParser, output_help: str, input_required: bool = True
) -> None:
    """Input, output, columns, config, address and reporting: shared by the subcommands."""
    parser.add_argument(
        "input",
        type=Path,
        nargs=None if input_required else "?",
        help="essays: .parquet, .csv, .tsv or .jsonl",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help=output_help)
    add_cluster_options(parser, inprocess=True)
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
    _add_run_options(ex, output_help="output .parquet file", input_required=False)
    ex.add_argument(
        "--prompt-column", default="prompt", help="column holding the prompt (default: prompt)"
    )
    ex.add_argument("--prompt", default=None, help="one prompt for every row")
    ex.add_argument(
        "--features",
        default=",".join(FEATURE_GROUPS),
        help=f"comma-separated groups from {','.join(FEATURE_GROUPS)} (default: all)",
    )
    cache = ex.add_mutually_exclusive_group()
    cache.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the result cache"
    )
    cache.add_argument(
        "--refresh-cache",
        action="store_true",
        help="recompute every row and overwrite its cached result",
    )
    ex.add_argument(
        "--detach",
        action="store_true",
        help="start the run on the cluster, print its run id and return; the run goes on "
        "without this process (get it with `hemma-features fetch RUN_ID -o OUT.parquet`)",
    )
    ex.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue an interrupted detached run (no INPUT): only rows without a result "
        "are computed; then fetch it to -o unless --detach",
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
    add_ops_commands(sub)
    return parser


def _cache_flag(args: argparse.Namespace) -> bool | str:
    if args.no_cache:
        return False
    return "refresh" if args.refresh_cache else True


def _extract(args: argparse.Namespace) -> int:
    if args.resume:
        return _resume(args)
    if args.input is None:
        raise InputError("give an INPUT file (or --resume RUN_ID)")
    if args.output is None and not args.detach:
        raise InputError("give -o OUTPUT.parquet (or --detach)")
    if args.output is not None and args.output.suffix.lower() != ".parquet":
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
        "features": normalize_features(args.features),
    }
    # Check the whole input before any cluster work starts (the run checks it again).
    prepare_input(
        data,
        max_text_chars=config.pipeline.max_text_chars,
        **{k: v for k, v in kwargs.items() if k != "features"},
    )
    metrics = None
    if args.address == "inprocess":
        if args.detach:
            raise InputError("--detach needs a cluster, not --address inprocess")
        from hemma_features.local import extract_local

        table = extract_local(data, config, **kwargs)
    else:
        from hemma_features.session import connect

        with connect(args.address, config, lazy=True) as session:
            if args.detach:
                run_id = session.submit(data, cache=_cache_flag(args), **kwargs)
                print(run_id)
                print(
                    f"run {run_id} started on the cluster; it goes on without this process.\n"
                    f"  progress: hemma-features runs\n"
                    f"  results:  hemma-features fetch {run_id} -o OUT.parquet",
                    file=sys.stderr,
                )
                return 0
            table = session.extract(
                data, progress=not args.no_progress, cache=_cache_flag(args), **kwargs
            )
            metrics = session.last_metrics
    write_result(table, args.output, metrics, args.metrics)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from hemma_features.session import connect

    if args.input is not None:
        raise InputError("--resume continues a run with its own input: give no INPUT")
    if args.output is None and not args.detach:
        raise InputError("give -o OUTPUT.parquet (or --detach)")
    if args.output is not None and args.output.suffix.lower() != ".parquet":
        raise InputError(f"output must be a .parquet file, got {args.output}")
    with connect(args.address, args.config, lazy=True) as session:
        started = session.resume(args.resume, cache=_cache_flag(args))
        print(
            f"run {args.resume}: {started['to_compute']} of {started['n_rows']} rows to compute",
            file=sys.stderr,
        )
        if args.detach:
            return 0
        table = session.fetch(args.resume, progress=not args.no_progress)
    write_result(table, args.output, None, args.metrics)
    return 0


def _prepare_training(args: argparse.Namespace) -> int:
    from hemma_features import training_data as td
    from hemma_features.config import load_config
    from hemma_features.inputs import read_table

    if not args.input.is_file():
        raise InputError(f"{args.input}: no such file")
    if args.output is None:
        raise InputError("give -o OUTPUT_DIR")
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
        level=logging.WARNING if getattr(args, "verbose", False) else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from hemma_features.session import ConnectError, RunError

    try:
        if hasattr(args, "handler"):
            return args.handler(args)
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
