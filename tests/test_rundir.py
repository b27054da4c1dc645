"""Run folders without Ray: parts, what is left to compute, listing and retention."""

from __future__ import annotations

import json
import time

import pyarrow as pa

from hemma_features.pipeline import rundir

ROW = "_hf_row"


def _input(n: int) -> pa.Table:
    return pa.table({"essay_id": [f"e{i}" for i in range(n)], ROW: pa.array(range(n), pa.int64())})


def test_missing_rows_are_those_without_a_readable_part(tmp_path):
    run = rundir.RunDir.under(tmp_path, "r1")
    run.create(_input(6), {"features": ["tier3"]})
    run.write_part(pa.table({ROW: pa.array([0, 1], pa.int64()), "x": [1.0, 2.0]}))
    damaged = run.write_part(pa.table({ROW: pa.array([4, 5], pa.int64()), "x": [5.0, 6.0]}))
    damaged.write_bytes(damaged.read_bytes()[:20])
    done = run.done_rows(ROW)
    assert sorted(done.to_pylist()) == [0, 1]
    assert damaged.with_suffix(".corrupt").exists()
    left = rundir.missing_rows(run.read_input(), done, ROW)
    assert left[ROW].to_pylist() == [2, 3, 4, 5]
    names, table = run.read_parts()
    assert len(names) == 1 and table.num_rows == 2
    assert run.read_parts(skip=names) == ([], None)


def test_list_and_clean_up_runs(tmp_path):
    for run_id, state in (("old-done", "done"), ("old-running", "running"), ("new-done", "done")):
        rundir.RunDir.under(tmp_path, run_id).create(_input(1), {})
        rundir.RunDir.under(tmp_path, run_id).update_info(state=state)
    ten_days_ago = time.time() - 10 * 86400
    for run_id in ("old-done", "old-running"):
        run = rundir.RunDir.under(tmp_path, run_id)
        info = {**run.read_info(), "created": ten_days_ago, "updated": ten_days_ago}
        (run.path / "run.json").write_text(json.dumps(info))  # as an old run left it
    removed = rundir.cleanup_runs(tmp_path, retention_days=7)
    # A running run is never cleaned up, however old: it may be resumed.
    assert removed == ["old-done"]
    listed = {r["run_id"]: r["state"] for r in rundir.list_runs(tmp_path)}
    assert listed == {"old-running": "running", "new-done": "done"}
    assert "config" not in rundir.list_runs(tmp_path)[0]
