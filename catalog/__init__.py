"""The catalog of a run folder: per-video Parquet fragments, compaction, and DuckDB views over them.

Public entry points (docs/catalog.md is the full contract: tables, columns, units, layout, versions)::

    from catalog import open_catalog
    con = open_catalog("runs/demo")          # read-only DuckDB connection, views videos / tracks / clips
    con.sql("SELECT clip_id FROM clips WHERE status = 'ok' AND duration_s > 4").fetchall()

    from catalog import compact_catalog
    print(compact_catalog("runs/demo").summary())   # the same as `g1forge compact runs/demo`

Importing this package imports neither DuckDB nor pyarrow; they load when a function needs them.
"""

from __future__ import annotations

from pathlib import Path

from catalog.layout import FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "compact_catalog", "open_catalog"]


def open_catalog(run_dir: str | Path):
    """A read-only ``duckdb.DuckDBPyConnection`` to the catalog of the run folder ``run_dir``, with the views
    ``videos``, ``tracks`` and ``clips`` registered.

    File access is limited to the run's ``data/`` folder and the configuration is locked, so queries cannot
    write or read elsewhere. Folders of an older catalog format read as they are; one of a newer format raises
    :class:`ingest.errors.ConfigError` saying to upgrade g1forge. Close the connection when done (or use it in
    a ``with`` block).
    """
    from catalog.db import connect

    return connect(run_dir, read_only=True)


def compact_catalog(run_dir: str | Path, **options):
    """Merge the run folder's per-video fragments into a new compaction generation; returns the
    :class:`catalog.compact.CompactionReport`. Options: see :func:`catalog.compact.compact`."""
    from catalog.compact import compact

    return compact(run_dir, **options)
