"""What every stage shares: declared resources, row errors, and adding columns to a batch.

A stage is a callable class: it loads its model once in ``__init__`` and maps a
``pyarrow.Table`` batch to the same table with its columns added. Rows whose ``error`` is
already set are passed through untouched (their new columns are null); a row that fails
inside the stage gets its own ``error`` and the rest of the batch goes on. The same object
runs in-process (tests, :func:`hemma_features.extract_local`) and as a Ray Data actor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.schema import normalize_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResources:
    """What Ray should reserve for each actor of a stage, and how many actors."""

    actors: int
    num_cpus: float
    num_gpus: float


@dataclass
class StageOutput:
    """What a stage computed for a batch: full-length columns and per-row errors."""

    columns: dict[str, list[Any]]
    errors: dict[int, str]


class Stage:
    """Base class of the pipeline stages."""

    name: ClassVar[str]
    #: Columns this stage adds, with their Arrow types (filled by subclasses per instance).
    output_types: dict[str, pa.DataType]

    def __init__(self, config: Config, features: Iterable[str] | None = None) -> None:
        self.config = config
        self.features = normalize_features(features)

    @classmethod
    def resources(cls, config: Config) -> StageResources:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def needed_for(cls, features: Iterable[str]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def versions(self) -> dict[str, str | None]:
        """Library and model versions that can change this stage's values."""
        return {}

    def process(self, batch: pa.Table, rows: Sequence[int]) -> StageOutput:
        """Compute the stage's columns for ``rows`` (indices of rows without an error)."""
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        errors = batch["error"].to_pylist()
        rows = [i for i, err in enumerate(errors) if err is None]
        output = self._process_isolating_failures(batch, rows)
        for i, message in output.errors.items():
            errors[i] = message
            log.warning("%s: row %d (essay_id=%r): %s", self.name, i, _row_id(batch, i), message)
        return add_columns(batch, output.columns, self.output_types, errors)

    def _process_isolating_failures(self, batch: pa.Table, rows: list[int]) -> StageOutput:
        """``process`` the rows together; if that raises, each row alone, so that a row
        which breaks the whole batch fails by itself."""
        if not rows:
            return self.empty_output(batch.num_rows)
        try:
            return self.process(batch, rows)
        except Exception as exc:
            if len(rows) == 1:
                output = self.empty_output(batch.num_rows)
                output.errors[rows[0]] = self.row_error(batch, rows[0], exc)
                return output
            log.warning(
                "%s: batch of %d failed (%s); retrying row by row", self.name, len(rows), exc
            )
        merged = self.empty_output(batch.num_rows)
        for row in rows:
            single = self._process_isolating_failures(batch, [row])
            for name, values in single.columns.items():
                merged.columns[name][row] = values[row]
            merged.errors.update(single.errors)
        return merged

    def empty_output(self, n_rows: int) -> StageOutput:
        return StageOutput(empty_columns(self.output_types, n_rows), {})

    def row_error(self, batch: pa.Table, row: int, exc: BaseException) -> str:
        return (
            f"{self.name} stage failed on essay_id={_row_id(batch, row)!r}: "
            f"{type(exc).__name__}: {exc}"
        )

    def close(self) -> None:
        """Release external resources (servers, sessions). Safe to call twice."""


def _row_id(batch: pa.Table, row: int) -> Any:
    return batch["essay_id"][row].as_py() if "essay_id" in batch.column_names else row


def add_columns(
    batch: pa.Table,
    columns: Mapping[str, list[Any]],
    types: Mapping[str, pa.DataType],
    errors: list[str | None],
) -> pa.Table:
    """Set (add or replace) ``columns`` with their types, and replace the ``error`` column."""
    for name, values in columns.items():
        array = pa.array(values, type=types[name])
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, array)
        else:
            batch = batch.append_column(name, array)
    index = batch.column_names.index("error")
    return batch.set_column(index, "error", pa.array(errors, type=pa.string()))


def empty_columns(names: Iterable[str], n_rows: int) -> dict[str, list[Any]]:
    return {name: [None] * n_rows for name in names}
