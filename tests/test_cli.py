"""The CLI's argument and input handling (in-process: no Ray needed)."""

import pyarrow.parquet as pq
import pytest
import yaml

from hemma_features import cli, read_metadata
from tests.ray_helpers import EXAMPLES


@pytest.fixture
def config_file(tmp_path, minilm_config):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(minilm_config.model_dump()))
    return path


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["extract", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--config",
        "--address",
        "--text-column",
        "--prompt-column",
        "--id-column",
        "--prompt",
        "--features",
        "--metrics",
    ):
        assert option in text


def test_inprocess_run_writes_parquet_with_metadata(tmp_path, config_file, capsys):
    out = tmp_path / "f.parquet"
    code = cli.main(
        [
            "extract",
            str(EXAMPLES),
            "-o",
            str(out),
            "--config",
            str(config_file),
            "--address",
            "inprocess",
            "--features",
            "tier1,tier3",
        ]
    )
    assert code == 0
    table = pq.read_table(out)
    assert table.num_rows == 12
    assert read_metadata(table)["features"] == ["tier1", "tier3"]
    assert "wrote 12 rows" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "tier9"], "unknown feature group 'tier9'"),
        (["--text-column", "body"], "text column 'body' not found"),
        (["--config", "nope"], "config 'nope' not found"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, args, message):
    code = cli.main(
        [
            "extract",
            str(EXAMPLES),
            "-o",
            str(tmp_path / "o.parquet"),
            "--address",
            "inprocess",
            *args,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_missing_input_and_bad_output(tmp_path, capsys):
    assert cli.main(["extract", str(tmp_path / "none.csv"), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["extract", str(EXAMPLES), "-o", str(tmp_path / "o.csv")]) == 2
    assert "output must be a .parquet file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["extract", str(EXAMPLES)], "give -o OUTPUT.parquet"),
        (["extract", "-o", "x.parquet"], "give an INPUT file"),
        (["extract", str(EXAMPLES), "--resume", "r1", "-o", "x.parquet"], "give no INPUT"),
        (["extract", str(EXAMPLES), "--detach", "--address", "inprocess"], "needs a cluster"),
        (["fetch", "r1", "-o", "x.csv"], "must be a .parquet file"),
    ],
)
def test_run_commands_refuse_bad_combinations(argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_cache_flags_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        cli.main(["extract", str(EXAMPLES), "-o", "x.parquet", "--no-cache", "--refresh-cache"])
    assert "not allowed with" in capsys.readouterr().err


def test_cache_stats_and_prune_on_this_machine(tmp_path, capsys):
    import json

    import pyarrow as pa

    from hemma_features.cache import KEY, ResultStore

    store = ResultStore(tmp_path / "cache")
    for fingerprint in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"):
        store.add(
            fingerprint, pa.table({KEY: ["k1", "k2"], "x": [1.0, 2.0]}), {"features": ["tier3"]}
        )
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"cache": {"dir": str(tmp_path / "cache")}}))

    assert cli.main(["cache", "stats", "--config", str(config), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["this_machine"]["fingerprints"]
    assert {s["fingerprint"]: s["rows"] for s in stats} == {
        "aaaaaaaaaaaaaaaa": 2,
        "bbbbbbbbbbbbbbbb": 2,
    }
    assert stats[0]["features"] == ["tier3"]

    argv = ["cache", "prune", "--fingerprint", "aaaaaaaaaaaaaaaa", "--config", str(config)]
    assert cli.main(argv) == 0
    assert "removed 1 parts" in capsys.readouterr().out
    assert cli.main(["cache", "stats", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "bbbbbbbbbbbbbbbb" in text and "aaaaaaaaaaaaaaaa" not in text
