"""Quality decisions as data: thresholds in a TOML file, scores as SQL over the stored clip metrics.

The thresholds in effect for a run folder live in ``OUT/quality.toml`` (copied from the bundled
``catalog/quality_thresholds.toml`` the first time the folder's views are written). The ``clips`` view is
``SELECT *, <score expressions> FROM (<the clips table>)``, so every query sees three computed columns:

``g1_ready``      BOOLEAN: every rule passes.
``quality_score`` DOUBLE in [0, 1] (formula below).
``fail_reasons``  VARCHAR[]: the reason codes of the failed rules in file order (``[]`` for a ready clip); a clip
                  that fails a gate (below) lists the failed gates only: the metrics of a filtered clip, or the
                  robot metrics of a clip never retargeted, are not what keeps it out.

Because the scores are SQL over metric columns already in the Parquet fragments, changing the thresholds
(:func:`rescore`, ``g1forge rescore``) rewrites one view and never re-runs a video or touches a fragment.

Rules (``[[rule]]`` tables, in order; each has a ``column`` of the clips table and a unique snake_case
``reason``):

- range: ``min`` and/or ``max`` (finite, ``min <= max``) on a numeric column, with ``scale`` (> 0, in the
  column's units; default the larger bound's magnitude, or 1 for bounds of 0) and ``weight`` (>= 0, default 1).
  Passes when ``min <= x <= max``. A missing value (NULL or NaN) fails with the reason ``missing_<column>``.
- ``in = ["ok", ...]`` on a text column: passes when the value is one of the strings (NULL fails).
- ``present = true``: passes when the value is neither NULL nor ``''``.

``in`` and ``present`` rules are gates. The score of a clip is::

    quality_score = gate * sum_i(w_i * s_i) / sum_i(w_i)        over the range rules i
    s_i = 1                            if min_i <= x_i <= max_i
        = exp(-(excess_i / scale_i))   beyond a bound, excess_i = min_i - x_i or x_i - max_i (> 0)
        = 0                            if x_i is missing
    gate = 1 if every gate rule passes, else 0

so it is deterministic, in [0, 1], 1 for a clip that passes every rule, and non-increasing in each metric's
distance beyond its bound (strictly decreasing there when the rule's weight is > 0). A rule of weight 0 decides
``g1_ready`` and ``fail_reasons`` but not the score; with every range weight 0 the score is the gate alone. A
rule on a column that an older run folder's fragments lack reads that column as NULL (missing).

Provenance: :func:`thresholds_hash` (12 hex characters of the SHA-256 of the parsed rules as canonical JSON:
comments and layout do not change it) identifies the thresholds in effect for a run folder.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from catalog.connection import configure_connection, sql_ident
from catalog.layout import RunLayout
from ingest.errors import ConfigError, G1ForgeError

THRESHOLDS_FORMAT = 1
#: The thresholds in effect for a run folder, relative to it.
RUN_THRESHOLDS_FILE = "quality.toml"
#: The bundled defaults.
DEFAULT_THRESHOLDS_PATH = Path(__file__).with_name("quality_thresholds.toml")
#: The computed columns the clips view adds, in order.
SCORE_COLUMNS = ("g1_ready", "quality_score", "fail_reasons")

_REASON_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RULE_KEYS = {"column", "reason", "min", "max", "scale", "weight", "in", "present"}
_NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT",
                  "UINTEGER", "USMALLINT", "UTINYINT", "UHUGEINT", "DECIMAL")


@dataclass(frozen=True)
class Rule:
    """One threshold rule over a clips column (see the module docstring for the three kinds)."""

    column: str
    reason: str
    min: float | None = None
    max: float | None = None
    scale: float | None = None
    weight: float = 1.0
    allowed: tuple[str, ...] | None = None  # the ``in`` list
    present: bool = False

    @property
    def kind(self) -> str:
        """``"range"``, ``"in"`` or ``"present"``."""
        if self.allowed is not None:
            return "in"
        return "present" if self.present else "range"

    @property
    def is_gate(self) -> bool:
        return self.kind != "range"

    @property
    def scale_value(self) -> float:
        """The scale in effect: the given one, else the larger bound's magnitude, else 1."""
        if self.scale is not None:
            return self.scale
        bounds = [abs(b) for b in (self.min, self.max) if b is not None]
        return max(bounds) if bounds and max(bounds) > 0 else 1.0

    def to_dict(self) -> dict:
        """Canonical form (what the hash covers)."""
        if self.kind == "in":
            return {"column": self.column, "reason": self.reason, "in": list(self.allowed)}
        if self.kind == "present":
            return {"column": self.column, "reason": self.reason, "present": True}
        return {"column": self.column, "reason": self.reason, "min": self.min, "max": self.max,
                "scale": self.scale_value, "weight": self.weight}


@dataclass(frozen=True)
class Thresholds:
    """A validated list of rules; ``source`` says where it was read from (for messages)."""

    rules: tuple[Rule, ...]
    source: str = ""

    def to_dict(self) -> dict:
        return {"format": THRESHOLDS_FORMAT, "rules": [r.to_dict() for r in self.rules]}

    def hash(self) -> str:
        """12 hex characters of the SHA-256 of :meth:`to_dict` as canonical JSON."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- loading


def _tomllib():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # Python 3.10
        from ingest.errors import require_module

        return require_module("tomli", "reading quality thresholds on Python 3.10", "pip install tomli")
    return tomllib


def parse_thresholds(text: str, source: str = "<text>") -> Thresholds:
    """Parse and validate thresholds TOML; raises :class:`ConfigError` listing every problem at once.

    Column names are checked later, against a run's clips table (:func:`check_columns`).
    """
    try:
        doc = _tomllib().loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{source} is not valid TOML ({exc}); fix the file (the bundled "
                          f"{DEFAULT_THRESHOLDS_PATH.name} shows the format)") from None
    problems: list[str] = []
    unknown = sorted(set(doc) - {"format", "rule"})
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}: only 'format' and [[rule]] tables are read")
    if doc.get("format", THRESHOLDS_FORMAT) != THRESHOLDS_FORMAT:
        problems.append(f"format = {doc.get('format')!r}: this g1forge reads format {THRESHOLDS_FORMAT}")
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        problems.append("'rule' must be an array of tables: write each rule as a [[rule]] section")
        raw_rules = []
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules, start=1):
        rule, errs = _parse_rule(raw)
        label = f"rule {i} ({raw.get('column', '?')})"
        problems += [f"{label}: {e}" for e in errs]
        if rule is not None:
            rules.append(rule)
    seen: dict[str, int] = {}
    for r in rules:
        seen[r.reason] = seen.get(r.reason, 0) + 1
    dupes = sorted(k for k, n in seen.items() if n > 1)
    if dupes:
        problems.append(f"reason codes must be unique (they name the failed rule): {dupes} repeat")
    if problems:
        raise ConfigError(f"bad quality thresholds in {source}: " + "; ".join(problems))
    return Thresholds(rules=tuple(rules), source=source)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_rule(raw: dict) -> tuple[Rule | None, list[str]]:
    errs: list[str] = []
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        errs.append(f"unknown key(s) {unknown}; a rule has {sorted(_RULE_KEYS)}")
    column, reason = raw.get("column"), raw.get("reason")
    if not isinstance(column, str) or not column:
        errs.append("'column' (a clips column name) is required")
    if not isinstance(reason, str) or not _REASON_RE.match(reason):
        errs.append(f"'reason' must be a snake_case code like 'jitter_high', got {reason!r}")
    has_range = "min" in raw or "max" in raw
    kinds = [k for k, on in (("min/max", has_range), ("in", "in" in raw), ("present", "present" in raw)) if on]
    if len(kinds) != 1:
        errs.append(f"give exactly one of min/max, in = [...], present = true (got {kinds or 'none'})")
        return None, errs
    if kinds[0] == "in":
        allowed = raw["in"]
        if not isinstance(allowed, list) or not allowed or not all(isinstance(v, str) for v in allowed):
            errs.append("'in' must be a non-empty list of strings")
        if set(raw) & {"scale", "weight"}:
            errs.append("'scale' and 'weight' apply to min/max rules only ('in' rules are gates)")
        return (None if errs else Rule(column=column, reason=reason, allowed=tuple(allowed))), errs
    if kinds[0] == "present":
        if raw["present"] is not True:
            errs.append("'present' must be true (leave the rule out to not require the column)")
        if set(raw) & {"scale", "weight"}:
            errs.append("'scale' and 'weight' apply to min/max rules only ('present' rules are gates)")
        return (None if errs else Rule(column=column, reason=reason, present=True)), errs
    values = {}
    for key in ("min", "max", "scale", "weight"):
        if key not in raw:
            continue
        v = raw[key]
        if not _is_number(v) or not math.isfinite(v):
            errs.append(f"'{key}' must be a finite number, got {v!r}")
        else:
            values[key] = float(v)
    lo, hi = values.get("min"), values.get("max")
    if lo is not None and hi is not None and lo > hi:
        errs.append(f"min {lo:g} is above max {hi:g}")
    if "scale" in values and values["scale"] <= 0:
        errs.append(f"'scale' must be > 0 (how fast the score falls beyond a bound), got {values['scale']:g}")
    if "weight" in values and values["weight"] < 0:
        errs.append(f"'weight' must be >= 0, got {values['weight']:g}")
    if errs:
        return None, errs
    return Rule(column=column, reason=reason, min=lo, max=hi, scale=values.get("scale"),
                weight=values.get("weight", 1.0)), errs


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and validate a thresholds file (see :func:`parse_thresholds`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read quality thresholds {p} ({exc.strerror or exc}); give an existing TOML "
                          f"file like the bundled {DEFAULT_THRESHOLDS_PATH.name}") from None
    return parse_thresholds(text, source=str(p))


def default_thresholds() -> Thresholds:
    return load_thresholds(DEFAULT_THRESHOLDS_PATH)


# ---------------------------------------------------------------------------------------------- columns


def known_clip_columns() -> dict[str, str]:
    """The clips table's columns as this g1forge writes them: name -> DuckDB type name."""
    from catalog.schema import clips_schema
    from pipeline.process import RETARGET_COLUMNS
    from pipeline.quality import METRIC_NAMES
    from pipeline.robot_metrics import ROBOT_METRIC_NAMES
    from pipeline.trajectory import TRAJECTORY_METRIC_NAMES

    names = [*METRIC_NAMES, *TRAJECTORY_METRIC_NAMES, *ROBOT_METRIC_NAMES, *RETARGET_COLUMNS]
    return _duckdb_types(clips_schema(names))


def _duckdb_types(schema) -> dict[str, str]:
    """name -> DuckDB type name (DOUBLE, BIGINT, VARCHAR, else pyarrow's name upper-cased) of a pyarrow schema."""
    import pyarrow as pa

    out = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            out[f.name] = "DOUBLE"
        elif pa.types.is_integer(f.type):
            out[f.name] = "BIGINT"
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            out[f.name] = "VARCHAR"
        else:
            out[f.name] = str(f.type).upper()
    return out


def _is_numeric(duckdb_type: str) -> bool:
    return duckdb_type.upper().startswith(_NUMERIC_TYPES)


def check_columns(thresholds: Thresholds, columns: dict[str, str]) -> None:
    """Raise :class:`ConfigError` for rules on unknown columns or of the wrong kind for the column's type.

    columns: the run's clips columns (name -> DuckDB type); the columns this g1forge writes are known too (a
    run folder written by an older version may lack some: they read as missing).
    """
    known = {**known_clip_columns(), **columns}
    problems = []
    for i, r in enumerate(thresholds.rules, start=1):
        if r.column in SCORE_COLUMNS:
            problems.append(f"rule {i}: {r.column} is computed from the rules and cannot be one")
            continue
        if r.column not in known:
            close = difflib.get_close_matches(r.column, list(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"rule {i}: the clips table has no column {r.column!r}{hint}")
            continue
        typ = known[r.column]
        if r.kind == "range" and not _is_numeric(typ):
            problems.append(f"rule {i}: min/max need a numeric column; {r.column} is {typ}")
        if r.kind == "in" and typ.upper() != "VARCHAR":
            problems.append(f"rule {i}: 'in' needs a text column; {r.column} is {typ}")
    if problems:
        raise ConfigError(f"bad quality thresholds in {thresholds.source}: " + "; ".join(problems)
                          + " (g1forge query DIR \"DESCRIBE clips\" lists the columns)")


def describe_columns(con, select_sql: str) -> dict[str, str]:
    """Column name -> DuckDB type of a SELECT, without reading its rows."""
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {select_sql}").fetchall()}


# ---------------------------------------------------------------------------------------------- SQL


def _str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _num(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"


def _rule_sql(rule: Rule, columns: dict[str, str]) -> tuple[str, str, str | None]:
    """``(pass, reason, score)`` SQL expressions of one rule; ``score`` is None for gates."""
    col = sql_ident(rule.column) if rule.column in columns else "NULL"
    if rule.kind == "in":
        ok = f"coalesce({col} IN ({', '.join(_str(v) for v in rule.allowed)}), false)"
        return ok, f"CASE WHEN NOT {ok} THEN {_str(rule.reason)} END", None
    if rule.kind == "present":
        ok = f"coalesce({col} IS NOT NULL AND CAST({col} AS VARCHAR) <> '', false)"
        return ok, f"CASE WHEN NOT {ok} THEN {_str(rule.reason)} END", None
    v = f"CAST({col} AS DOUBLE)"
    missing = f"({v} IS NULL OR isnan({v}))"
    conds = [f"NOT isnan({v})"]
    if rule.min is not None:
        conds.append(f"{v} >= {_num(rule.min)}")
    if rule.max is not None:
        conds.append(f"{v} <= {_num(rule.max)}")
    ok = f"coalesce({' AND '.join(conds)}, false)"
    reason = (f"CASE WHEN {missing} THEN {_str('missing_' + rule.column)} "
              f"WHEN NOT {ok} THEN {_str(rule.reason)} END")
    scale = _num(rule.scale_value)
    branches = [f"WHEN {missing} THEN 0.0"]
    if rule.min is not None:
        branches.append(f"WHEN {v} < {_num(rule.min)} THEN exp(-({_num(rule.min)} - {v}) / {scale})")
    if rule.max is not None:
        branches.append(f"WHEN {v} > {_num(rule.max)} THEN exp(-({v} - {_num(rule.max)}) / {scale})")
    score = f"CASE {' '.join(branches)} ELSE 1.0 END"
    return ok, reason, score


def score_columns_sql(thresholds: Thresholds, columns: dict[str, str]) -> str:
    """The select-list of the three computed columns (``... AS g1_ready, ... AS quality_score, ... AS
    fail_reasons``) over a relation with ``columns`` (name -> type; rules on absent columns read NULL)."""
    parts = [(r, *_rule_sql(r, columns)) for r in thresholds.rules]
    ready = " AND ".join(f"({ok})" for _, ok, _, _ in parts) or "true"
    gates = " AND ".join(f"({ok})" for r, ok, _, _ in parts if r.is_gate) or "true"
    weighted = [(r.weight, score) for r, _, _, score in parts if score is not None and r.weight > 0]
    total = sum(w for w, _ in weighted)
    if weighted:
        mean = " + ".join(f"{_num(w)} * ({s})" for w, s in weighted)
        value = f"least(1.0, greatest(0.0, ({mean}) / {_num(total)}))"
    else:
        value = "1.0"
    score = f"CAST(CASE WHEN {gates} THEN {value} ELSE 0.0 END AS DOUBLE)"

    def listed(rules_parts) -> str:
        reasons = ", ".join(reason for _, _, reason, _ in rules_parts)
        return f"list_filter([{reasons}], lambda r: r IS NOT NULL)" if rules_parts else "CAST([] AS VARCHAR[])"

    gate_parts = [p for p in parts if p[0].is_gate]
    metric_parts = [p for p in parts if not p[0].is_gate]
    fails = f"CASE WHEN {gates} THEN {listed(metric_parts)} ELSE {listed(gate_parts)} END"
    return f"({ready}) AS g1_ready, {score} AS quality_score, CAST({fails} AS VARCHAR[]) AS fail_reasons"


def scored_select_sql(base_sql: str, thresholds: Thresholds, columns: dict[str, str]) -> str:
    """``SELECT *, <score columns> FROM (<base_sql>)``; base columns named like a score column are replaced."""
    clash = [c for c in SCORE_COLUMNS if c in columns]
    star = f"* EXCLUDE ({', '.join(sql_ident(c) for c in clash)})" if clash else "*"
    return f"SELECT {star}, {score_columns_sql(thresholds, columns)} FROM ({base_sql})"


# ---------------------------------------------------------------------------------------------- run folders


def run_thresholds_path(layout: RunLayout) -> Path:
    """``OUT/quality.toml``: the thresholds in effect for the run folder."""
    return layout.root / RUN_THRESHOLDS_FILE


def run_thresholds(layout: RunLayout) -> Thresholds:
    """The thresholds in effect for a run folder (the bundled defaults until the folder has its own copy)."""
    path = run_thresholds_path(layout)
    if not path.exists():
        return default_thresholds()
    try:
        return load_thresholds(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; fix {path} or install a good file with `g1forge rescore {layout.root} "
                          "--thresholds FILE`") from None


def thresholds_hash(layout: RunLayout | str | Path) -> str:
    """The hash of the thresholds in effect for a run folder (for export manifests)."""
    if not isinstance(layout, RunLayout):
        layout = RunLayout.at(layout)
    return run_thresholds(layout).hash()


def run_clip_columns(layout: RunLayout, thresholds: Thresholds, base_sql: str, con=None) -> dict[str, str]:
    """The columns (name -> DuckDB type) of a run folder's clips table that the rules need.

    Read from the clips schema fragment (one small file, rewritten with the full schema whenever a run prepares
    the folder, and merged into compacted files) when it has every rule column; otherwise (an older folder)
    from DuckDB, which reads the footer of every fragment. con: a DuckDB connection whose ``file_search_path``
    is the run folder, or None for a private one.
    """
    path = layout.schema_fragment("clips")
    if path.exists():
        import pyarrow.parquet as pq

        columns = _duckdb_types(pq.read_schema(path))
        if all(r.column in columns for r in thresholds.rules):
            return columns
    own = con is None
    if own:
        import duckdb

        con = duckdb.connect(":memory:")
        configure_connection(con, layout.root)
    try:
        return describe_columns(con, base_sql)
    finally:
        if own:
            con.close()


def scored_clips_sql(layout: RunLayout, base_sql: str, con=None) -> str:
    """The clips view's SELECT: ``base_sql`` plus the run's score columns (con: see :func:`run_clip_columns`)."""
    thresholds = run_thresholds(layout)
    columns = run_clip_columns(layout, thresholds, base_sql, con)
    check_columns(thresholds, columns)
    return scored_select_sql(base_sql, thresholds, columns)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: SHA-256 of every earlier release of the bundled ``quality_thresholds.toml``. A run folder whose copy is one of
#: them, byte for byte, never had its thresholds chosen by a user: it gets the current defaults (whose metrics
#: may have changed meaning, e.g. frame-rate-free jerk in results version 2), the old copy kept in ``state/``.
PREVIOUS_DEFAULT_SHA256 = frozenset({
    "0c49c1aa2fb1c775f52dbdfe18c1ceeef04636a482860eab08e3ba51aa18e8d8",  # b5f4276: raw jerk lines 3000 / 4000
    "dc378da95d905a66be00f21494086db488043f8d4e7432c167ad0265a5ae66ec",  # b33afd4: before trajectory_recovered
    "6af9cd350d435c976ec6845921d950d4217c3c966a96ce93240c5187a24745ac",  # b368f50: before the support-level lock
})


def ensure_run_thresholds(layout: RunLayout) -> Path:
    """Give a run folder its own copy of the bundled defaults if it has none yet, or if it holds an unedited copy
    of earlier defaults (:data:`PREVIOUS_DEFAULT_SHA256`); returns the path. A file a user installed or edited is
    never replaced."""
    path = run_thresholds_path(layout)
    if not path.exists():
        _write_atomic(path, DEFAULT_THRESHOLDS_PATH.read_bytes())
    elif hashlib.sha256(path.read_bytes()).hexdigest() in PREVIOUS_DEFAULT_SHA256:
        install_thresholds(layout, DEFAULT_THRESHOLDS_PATH.read_text(encoding="utf-8"))
    return path


def install_thresholds(layout: RunLayout, text: str) -> Path | None:
    """Make ``text`` the run folder's ``quality.toml`` (atomic replace). A previous file with other contents is
    kept first as ``state/quality.<UTC time>.toml``; returns that path, or None when nothing was replaced."""
    path = run_thresholds_path(layout)
    data = text.encode("utf-8")
    archived = None
    if path.exists():
        old = path.read_bytes()
        if old != data:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            archived = layout.state_dir / f"quality.{stamp}.toml"
            _write_atomic(archived, old)
    _write_atomic(path, data)
    return archived


# ---------------------------------------------------------------------------------------------- rescore


@dataclass
class ScoreCounts:
    """Counts over the clips view: all clips, ok clips, G1-ready clips and the most common fail reasons."""

    clips: int
    ok: int
    ready: int
    top_reasons: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class RescoreReport:
    out_dir: str
    thresholds_source: str
    thresholds_hash: str
    previous_hash: str | None
    archived: str | None
    before: ScoreCounts | None
    after: ScoreCounts
    views_s: float
    elapsed_s: float

    def summary(self) -> str:
        b, a = self.before, self.after
        kept = f" (previous {self.previous_hash} kept as {self.archived})" if self.archived else ""
        ready_before = "?" if b is None else f"{b.ready:,}"
        lines = [f"g1forge rescore: thresholds {self.thresholds_hash} from {self.thresholds_source}{kept}",
                 (f"  g1_ready: {ready_before} -> {a.ready:,} of {a.clips:,} clips ({a.ok:,} ok); views rewritten "
                  f"in {self.views_s:.2f} s, {self.elapsed_s:.2f} s in all")]
        if a.top_reasons:
            lines.append("  top fail reasons:")
            lines += [f"  {n:9,d} x {reason}" for reason, n in a.top_reasons]
        return "\n".join(lines)


def score_counts(run_dir: str | Path, top: int = 8) -> ScoreCounts | None:
    """Counts of the run's clips view, or None when its views predate scoring (no ``g1_ready`` column)."""
    from catalog.db import connect

    con = connect(run_dir)
    try:
        names = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        if not set(SCORE_COLUMNS) <= names:
            return None
        clips, ok, ready = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE g1_ready) FROM clips"
        ).fetchone()
        reasons = con.execute(
            "SELECT r, count(*) AS n FROM (SELECT unnest(fail_reasons) AS r FROM clips) "
            f"GROUP BY r ORDER BY n DESC, r LIMIT {int(top)}").fetchall()
    finally:
        con.close()
    return ScoreCounts(clips=int(clips), ok=int(ok), ready=int(ready), top_reasons=[(r, int(n)) for r, n in reasons])


def rescore(run_dir: str | Path, thresholds_file: str | Path | None = None) -> RescoreReport:
    """Install ``thresholds_file`` (validated first) as the run folder's thresholds and rewrite its views;
    without a file, re-apply the thresholds in effect. No video is re-run and no fragment is touched.

    Raises :class:`ConfigError` for a bad file (nothing changes) and :class:`G1ForgeError` (reason
    ``catalog_busy``) when the catalog cannot be rewritten (the previous thresholds are put back).
    """
    import duckdb

    from catalog import db

    t0 = time.perf_counter()
    layout = RunLayout.at(run_dir)
    if not layout.info_path.exists():
        raise ConfigError(f"{layout.root} is not a g1forge run folder (no {layout.info_path.name}); "
                          "pass the --out folder of a `g1forge run`")
    current = run_thresholds_path(layout)
    if thresholds_file is not None:
        source = Path(thresholds_file)
        new = load_thresholds(source)
        text = source.read_text(encoding="utf-8")
    else:
        source = current if current.exists() else DEFAULT_THRESHOLDS_PATH
        new = run_thresholds(layout)
        text = source.read_text(encoding="utf-8")
    check_columns(new, run_clip_columns(layout, new, db._table_sql(layout, "clips")))
    previous_text = current.read_text(encoding="utf-8") if current.exists() else None
    try:  # a hand-broken current file is what a new one may be fixing: no counts or hash from it then
        before = score_counts(layout.root)
        previous_hash = run_thresholds(layout).hash() if previous_text is not None else None
    except ConfigError:
        before, previous_hash = None, None
    archived = install_thresholds(layout, text)
    t_views = time.perf_counter()
    try:
        # the views only: a compacted catalog stays as it is (write_views would open it for a run's writes)
        db.refresh_views(layout)
    except BaseException as exc:  # put the previous thresholds back whatever stopped the rewrite
        if previous_text is None:
            current.unlink(missing_ok=True)
        else:
            _write_atomic(current, previous_text.encode("utf-8"))
        if archived is not None:
            archived.unlink(missing_ok=True)
        if not isinstance(exc, (OSError, duckdb.Error)):
            raise
        raise G1ForgeError(f"could not rewrite {layout.duckdb_path.name} ({exc}); the previous thresholds are "
                           "kept. Close other programs that have the catalog open (a query, a run) and run "
                           "g1forge rescore again", reason="catalog_busy") from None
    views_s = time.perf_counter() - t_views
    after = score_counts(layout.root)
    return RescoreReport(out_dir=str(layout.root), thresholds_source=str(source), thresholds_hash=new.hash(),
                         previous_hash=previous_hash, archived=str(archived) if archived else None,
                         before=before, after=after, views_s=views_s, elapsed_s=time.perf_counter() - t0)
