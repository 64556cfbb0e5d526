"""Reading any MEDS dataset (the synthetic one, or e.g. a MIMIC-IV MEDS export),
validated against the ``meds`` schema."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import meds
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from flexible_schema.exceptions import SchemaValidationError, TableValidationError


def _conform(table: pa.Table, schema, file: Path, columns: Sequence[str]) -> pa.Table:
    """Select ``columns`` and align them to the MEDS schema; a missing, uncastable or wrongly null column
    raises ValueError naming file and column."""
    for column in columns:
        if column not in table.column_names:
            required = ", ".join(schema.required_columns())
            raise ValueError(
                f"{file}: missing column {column!r}; a MEDS {schema.__name__} table needs {required} "
                f"(found {', '.join(table.column_names)})"
            )
    try:
        table = schema.align(table.select(list(columns)))  # casts castable types (e.g. int32 ids, ns timestamps)
        schema.validate(table)
    except (SchemaValidationError, TableValidationError) as error:
        raise ValueError(f"{file}: {error}") from error
    return table


@dataclass
class MedsDataset:
    """A MEDS dataset in memory: its events (sorted by subject, then time, static rows first) and splits."""

    root: Path
    events: pa.Table  # subject_id, time, code, numeric_value
    splits: dict[int, str]
    codes: pa.Table | None

    def subjects(self, split: str) -> list[int]:
        """The subject ids in ``split`` (``train``, ``tuning`` or ``held_out``), ascending."""
        chosen = sorted(subject for subject, name in self.splits.items() if name == split)
        if not chosen:
            raise ValueError(f"split {split!r} has no subjects; splits present: {sorted(set(self.splits.values()))}")
        return chosen

    def events_of(self, subject_ids: Iterable[int]) -> pa.Table:
        """The events of the given subjects."""
        return self.events.filter(pc.is_in(self.events["subject_id"], pa.array(list(subject_ids), pa.int64())))


def read_meds_dataset(root) -> MedsDataset:
    """Read ``root/data/**/*.parquet`` (+ splits and code metadata when present) of any MEDS dataset.

    Only ``subject_id``, ``time``, ``code`` and ``numeric_value`` are kept (the last is optional);
    a shard that lacks a required column, or holds one that cannot be cast to the MEDS type,
    raises ``ValueError`` naming the file and the column.
    """
    root = Path(root)
    files = sorted((root / meds.data_subdirectory).rglob("*.parquet"))
    if not files:
        raise ValueError(f"root={str(root)!r} holds no data/*.parquet files; expected a MEDS dataset directory")
    shards = []
    for file in files:
        table = pq.read_table(file)
        if "numeric_value" not in table.column_names:
            table = table.append_column("numeric_value", pa.nulls(len(table), pa.float32()))
        shards.append(_conform(table, meds.DataSchema, file, ("subject_id", "time", "code", "numeric_value")))
    events = pa.concat_tables(shards).sort_by(
        [("subject_id", "ascending", "at_start"), ("time", "ascending", "at_start")]
    )

    splits_file = root / meds.subject_splits_filepath
    if splits_file.exists():
        table = _conform(pq.read_table(splits_file), meds.SubjectSplitSchema, splits_file, ("subject_id", "split"))
        splits = dict(zip(table["subject_id"].to_pylist(), table["split"].to_pylist()))
    else:
        splits = {subject: meds.train_split for subject in pc.unique(events["subject_id"]).to_pylist()}
    codes_file = root / meds.code_metadata_filepath
    codes = pq.read_table(codes_file) if codes_file.exists() else None
    if codes is not None and "code" not in codes.column_names:
        raise ValueError(
            f"{codes_file}: missing column 'code'; MEDS code metadata needs code, description, parent_codes"
        )
    return MedsDataset(root, events, splits, codes)


def read_labels(path) -> pa.Table:
    """A MEDS label parquet (``subject_id, prediction_time, boolean_value``), validated against ``LabelSchema``."""
    path = Path(path)
    table = pq.read_table(path)
    extra = [c for c in table.column_names if c not in meds.LabelSchema.columns()]
    if extra:
        raise ValueError(
            f"{path}: columns {extra} are not in the MEDS LabelSchema ({', '.join(meds.LabelSchema.columns())})"
        )
    columns = [
        c for c in meds.LabelSchema.columns() if c in table.column_names or c in meds.LabelSchema.required_columns()
    ]
    return _conform(table, meds.LabelSchema, path, columns)
