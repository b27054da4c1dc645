import pyarrow as pa

from hemma_features.blocks import ramped_blocks


def test_ramped_blocks_cover_every_row_once():
    table = pa.table({"i": list(range(50))})
    blocks = ramped_blocks(table, 16)
    assert [b.num_rows for b in blocks] == [4, 8, 16, 16, 6]
    assert pa.concat_tables(blocks)["i"].to_pylist() == list(range(50))
    assert [b.num_rows for b in ramped_blocks(table.slice(0, 0), 16)] == [0]
    assert [b.num_rows for b in ramped_blocks(table.slice(0, 3), 1)] == [1, 1, 1]
