"""Settings shared by every DuckDB connection that reads a run folder's Parquet files, and SQL quoting."""

from __future__ import annotations

from pathlib import Path

#: DuckDB optimizer passes every catalog connection switches off. ``statistics_propagation`` folds expressions
#: from Parquet min/max statistics, which leave NaN out: for a NaN that an older g1forge wrote into a fragment,
#: every DuckDB tried (1.4.4 to 2.0.1) reads ``x <= max`` as true, and 2.0.x reads ``isnan(x)`` as false
#: (tests/test_duckdb_versions.py). Fragments no longer hold NaN (:func:`catalog.schema.nan_to_null`); this keeps
#: older folders right too.
DISABLED_OPTIMIZERS = "statistics_propagation"


def configure_connection(con, root: str | Path) -> None:
    """Settings of every connection that reads a run folder: relative paths resolve against ``root`` (so the
    folder can move), and :data:`DISABLED_OPTIMIZERS`."""
    root_sql = str(root).replace("'", "''")
    con.execute(f"SET file_search_path = '{root_sql}'")
    con.execute(f"SET disabled_optimizers = '{DISABLED_OPTIMIZERS}'")


def sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
