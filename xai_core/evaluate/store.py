"""Results on disk: Parquet parts, each written whole and renamed into place.

A results folder holds ``part-*.parquet`` files, one per finished unit of work (a batch
of images for one method and layer). Each part is written to a hidden temporary file,
flushed to disk and renamed atomically, so a run that is interrupted (Ctrl-C, SIGKILL, a
killed worker, a full disk) leaves only whole parts: nothing finished is lost and no row
is half-written. A re-run reads the keys of the rows present and computes only the
others, so no row is written twice; readers also drop any repeated key (two runs on the
same shard at once), keeping the first.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from xai_core.evaluate.jobs import row_key
from xai_core.evaluate.methods import UsageError

METRIC_COLUMNS = (
    "probability",
    "average_drop",
    "average_increase",
    "insertion_auc",
    "deletion_auc",
    "overall",
    "multiplied_change",
    "multiplied_increased",
    "multiplied_drop_percent",
    "top_removed_drop",
    "top_removed_drop_percent",
    "road_morf",
    "road_lerf",
)
#: ``--sanity``: randomisation-check summaries per row (see :mod:`xai_core.evaluate.sanity`); null without it.
SANITY_COLUMNS = ("sanity_mprt_spearman", "sanity_random_logit_spearman")
SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("file", pa.string()),
        ("method", pa.string()),
        ("layer", pa.string()),
        ("target", pa.string()),
        ("class_idx", pa.int64()),
        ("class_name", pa.string()),
        ("label", pa.int64()),
        ("predicted", pa.int64()),
        ("correct", pa.bool_()),
        *((name, pa.float64()) for name in METRIC_COLUMNS),
        *((name, pa.float64()) for name in SANITY_COLUMNS),
        ("ad_positive_only", pa.bool_()),
        ("pixels_per_step", pa.int64()),
        ("crop_box", pa.list_(pa.float64(), 4)),
        ("map_seconds", pa.float64()),
        ("metric_seconds", pa.float64()),
        ("error", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
PART_GLOB = "part-*.parquet"


def key_of(row: dict) -> tuple[str, ...]:
    """The resume key of a stored row."""
    return row_key(row["model"], row["file"], row["method"], row["layer"], row["target"], row["label"])


class ResultStore:
    """A folder of Parquet parts (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0

    def parts(self) -> list[Path]:
        """The finished parts, sorted by name (the order they were written in, per run)."""
        return sorted(self.folder.glob(PART_GLOB)) if self.folder.is_dir() else []

    def write(self, rows: Sequence[dict]) -> Path | None:
        """Write ``rows`` as one new part; ``None`` when there are none.

        Raises:
            OSError: the disk is full or not writable (no partial part is left behind).
        """
        if not rows:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        final = self.folder / f"part-{self._run}-{self._seq:06d}.parquet"
        tmp = self.folder / f".{final.name}.tmp"
        table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in rows], schema=SCHEMA)
        try:
            with open(tmp, "wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def rows(self) -> list[dict]:
        """Every stored row, once per key (see :func:`read_rows`)."""
        return read_rows([self.folder])


def read_table(folders: Iterable[Path]) -> pa.Table:
    """All parts of ``folders`` (results folders or single part files) as one table.

    Raises:
        UsageError: a file is not a results part of this version (other columns).
    """
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        files += [folder] if folder.is_file() else sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []
    tables = []
    for path in files:
        table = pq.read_table(path)
        missing = [c for c in COLUMNS if c not in table.schema.names]
        if missing and set(missing) <= {*METRIC_COLUMNS, *SANITY_COLUMNS}:  # parts from before a column was added
            for name in missing:
                table = table.append_column(name, pa.nulls(len(table), pa.float64()))
            table = table.select(list(COLUMNS))
        if table.schema.names != list(COLUMNS):
            raise UsageError(
                f"{str(path)!r} is not an evaluation results part with the expected columns "
                f"(found {table.schema.names}); remove it or choose another --out."
            )
        tables.append(table.cast(SCHEMA))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def read_rows(folders: Iterable[Path]) -> list[dict]:
    """Rows of ``folders`` as dicts, each key once (the first written wins)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for row in read_table(folders).to_pylist():
        key = key_of(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
