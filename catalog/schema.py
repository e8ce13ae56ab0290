"""The catalog's tables as pyarrow schemas: the contract between workers that write fragments and users who
query them. Units are in the column names; times are seconds, lengths metres unless a name says otherwise.

``videos``: exactly one row per input, whatever happened to it.
``tracks``: one row per person track found in an ``ok`` video.
``clips``: one row per clip window (``ok``) and per rejected window (``filtered`` with a reason); the clip's
human-side quality metrics are float64 columns named as :mod:`pipeline.quality` names them.
"""

from __future__ import annotations

import pyarrow as pa

STATUSES = ("ok", "filtered", "failed")

VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("source_kind", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("attempts", pa.int32()),
        ("config_hash", pa.string()),
        ("backend", pa.string()),
        ("backend_version", pa.string()),
        ("code_version", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("license", pa.string()),
        ("range_start_s", pa.float64()),
        ("range_end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("is_vfr", pa.bool_()),
        ("width_px", pa.int32()),
        ("height_px", pa.int32()),
        ("rotation_deg", pa.int32()),
        ("codec", pa.string()),
        ("num_frames", pa.int64()),
        ("size_bytes", pa.int64()),
        ("has_audio", pa.bool_()),
        ("focal_px", pa.float64()),
        ("frames_processed", pa.int64()),
        ("num_tracks", pa.int32()),
        ("num_clips", pa.int32()),
        ("num_clips_ok", pa.int32()),
        ("clips_duration_s", pa.float64()),
        ("download_time_s", pa.float64()),
        ("pose_time_s", pa.float64()),
        ("retarget_time_s", pa.float64()),
        ("process_time_s", pa.float64()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)

TRACKS = pa.schema(
    [
        ("video_id", pa.string()),
        ("track_id", pa.int32()),
        ("source_track_id", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("num_frames", pa.int64()),
        ("first_frame", pa.int64()),
        ("last_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("tracked_frac", pa.float64()),
        ("det_conf_mean", pa.float64()),
        ("joint_conf_mean", pa.float64()),
        ("has_smpl", pa.bool_()),
        ("num_clips", pa.int32()),
        ("num_clips_ok", pa.int32()),
    ]
)

CLIP_BASE = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("track_id", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("num_frames", pa.int64()),
        ("fps", pa.float64()),
        ("joint_set", pa.string()),
        ("has_smpl", pa.bool_()),
        ("motion_path", pa.string()),
        ("g1_motion_path", pa.string()),
    ]
)


def clips_schema(metric_names: list[str] | tuple[str, ...]) -> pa.Schema:
    """The clips schema: :data:`CLIP_BASE` plus one float64 column per metric (sorted by name)."""
    base = set(CLIP_BASE.names)
    extra = [pa.field(n, pa.float64()) for n in sorted(set(metric_names)) if n not in base]
    return pa.schema(list(CLIP_BASE) + extra)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """A table with exactly ``schema``'s columns; keys missing from a row become nulls, unknown keys raise.

    A NaN in a floating-point column is written as null: "not measured" is null everywhere in the catalog
    (see :func:`nan_to_null`)."""
    unknown = {k for r in rows for k in r} - set(schema.names)
    if unknown:
        raise KeyError(f"columns not in the schema: {sorted(unknown)}")
    cols = {name: [r.get(name) for r in rows] for name in schema.names}
    return nan_to_null(pa.table(cols, schema=schema))


def nan_to_null(table: pa.Table) -> pa.Table:
    """``table`` with every NaN of its floating-point columns replaced by null.

    Why no NaN ever reaches a Parquet file of the catalog: Parquet's min/max statistics of a float column leave
    NaN out, so a file holding ``[NaN, 1.0]`` declares the range ``[1.0, 1.0]``. DuckDB 2.0.x trusts those
    statistics when it reads fragments with ``union_by_name`` and folds expressions on them: ``isnan(x)`` becomes
    false and ``x <= 4000`` true for the NaN row, so a clip scored 1.0 with fail reasons (issue 11; reproduced by
    ``tests/test_duckdb_versions.py``). A null is counted in the statistics (``null_count``) and no reader mistakes it.
    """
    import pyarrow.compute as pc

    columns = list(table.columns)
    changed = False
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type) and table.num_rows:
            nan = pc.is_nan(columns[i])
            if pc.any(nan).as_py():
                columns[i] = pc.if_else(nan, pa.scalar(None, field.type), columns[i])
                changed = True
    return pa.Table.from_arrays(columns, schema=table.schema) if changed else table
