"""Input reading and checks that fail before any work is done."""

import pyarrow as pa
import pytest

from hemma_features.inputs import InputError, prepare_input


def test_missing_column_is_named_with_the_available_ones():
    with pytest.raises(InputError, match=r"text column 'text' not found.*\['essay_id', 'body'\]"):
        prepare_input([{"essay_id": 1, "body": "x"}])
    with pytest.raises(InputError, match="id column 'id'"):
        prepare_input([{"essay_id": 1, "text": "x"}], id_column="id")


def test_duplicate_ids_are_listed():
    rows = [{"essay_id": i % 3, "text": "x"} for i in range(7)]
    with pytest.raises(InputError, match=r"3 duplicate essay_id value\(s\): \[0, 1, 2\]"):
        prepare_input(rows)


def test_missing_ids_are_listed():
    with pytest.raises(InputError, match=r"rows \[1\]"):
        prepare_input([{"essay_id": "a", "text": "x"}, {"essay_id": None, "text": "y"}])


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        prepare_input(tmp_path / "absent.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("essay_id,text\n1,caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(
        InputError, match=r"latin1\.csv: not valid UTF-8 text \(in column\(s\) \['text'\]"
    ):
        prepare_input(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"broken\.parquet: cannot read it as parquet"):
        prepare_input(broken)
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'"):
        prepare_input(tmp_path / "essays.xlsx")


def test_unsupported_container():
    with pytest.raises(InputError, match="unsupported input int"):
        prepare_input(42)
    with pytest.raises(InputError, match="row 1: expected a mapping"):
        prepare_input([{"essay_id": 1, "text": "x"}, "oops"])


def test_row_problems_set_error_and_keep_rows():
    table = prepare_input(
        [
            {"essay_id": 1, "text": "fine", "prompt": 3},
            {"essay_id": 2, "text": "x" * 11},
            {"essay_id": 3, "text": ["a list"]},
        ],
        max_text_chars=10,
    )
    assert table.column_names == ["essay_id", "text", "prompt", "error"]
    assert table["error"].to_pylist() == [
        "prompt is int, expected a string",
        "text has 11 characters, more than pipeline.max_text_chars=10",
        "text is list, expected a string",
    ]
    assert table["text"].to_pylist() == ["fine", None, None]


def test_id_type_is_kept():
    table = prepare_input(pa.table({"essay_id": pa.array([5, 6], pa.int32()), "text": ["a", "b"]}))
    assert table.schema.field("essay_id").type == pa.int32()
