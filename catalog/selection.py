"""Which clips an export takes: ``--where``, ``--sample N --seed S``, ``--balance EXPR``, ``--limit`` and the
train/validation split (``--val-frac F``).

Candidates are the ``ok`` clips that have a G1 motion and satisfy ``--where``, a SQL predicate over the clips
columns joined with their video's columns (a name both tables have, such as ``status`` or ``duration_s``, means
the clip's; ``license``, ``source_kind``, ``tags``, ``backend``, ``uri`` are the video's).

Every choice depends on the catalog's content and the seed only, never on fragment or file order:

- **order**: without ``--sample`` and ``--balance`` the candidates are taken in ``clip_id`` order; otherwise in
  the order of :func:`sample_key`, ``sha256("<seed>:<clip_id>")`` (hex), which is a uniformly random permutation
  for a given seed. ``--sample N`` takes the first ``N`` in that order: a uniform sample without replacement.
- **balance**: ``--balance EXPR`` (a column such as ``source_kind`` or ``backend``, or any SQL expression over the
  same columns, e.g. ``"tags[1]"``; NULL is the group ``(null)``, lists group by their whole value) gives every
  value an equal share (:func:`balanced_quotas`). With ``--sample N``, ``N`` is split as evenly as possible over
  the groups; a group smaller than its share gives all its clips and what it could not fill is shared again among
  the others; the last clips of an uneven division go one each to the groups first in label order. Without
  ``--sample`` every group gives as many clips as the smallest group has. Inside a group the clips are taken in
  :func:`sample_key` order.
- **limit**: ``--limit L`` keeps the first ``L`` of the result in the order above (so with ``--sample`` it is a
  smaller uniform sample).
- **split** (:func:`split_of`): a clip's split is decided by its *video*: ``sha256("<seed>:split:<video_id>")``
  read as a number in [0, 1) below ``F`` means ``val``. Clips of one video share the person, scene, camera and
  often neighbouring moments, so a validation clip whose video also gave training clips would measure memory,
  not generalisation; a hash (not a ranking) keeps a video's split fixed when videos are added to the catalog or
  another sample is drawn with the same seed. ``F`` is the expected fraction of videos, not an exact one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Mapping

from ingest.errors import ConfigError

NULL_GROUP = "(null)"
_HASH_DIGITS = 15  # hex digits of the split hash read as a number: 60 bits, exact in a float64


@dataclass(frozen=True)
class SelectionSpec:
    """The selection options of one export (see the module docstring); :meth:`validate` checks them all."""

    where: str | None = None
    sample: int | None = None
    seed: int = 0
    balance: str | None = None
    limit: int | None = None
    val_frac: float | None = None

    def validate(self) -> "SelectionSpec":
        """Raise :class:`ConfigError` listing every bad option; returns ``self``."""
        problems = []
        for name, value in (("--sample", self.sample), ("--limit", self.limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                problems.append(f"{name} must be a whole number >= 0 (got {value!r})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            problems.append(f"--seed must be a whole number (got {self.seed!r})")
        if self.val_frac is not None and not (isinstance(self.val_frac, (int, float))
                                              and math.isfinite(self.val_frac) and 0 <= self.val_frac < 1):
            problems.append(f"--val-frac must be a fraction in [0, 1), e.g. 0.1 (got {self.val_frac!r})")
        if self.balance is not None and not self.balance.strip():
            problems.append("--balance needs a column name or SQL expression, e.g. source_kind")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    @property
    def randomised(self) -> bool:
        """True when clips are taken in :func:`sample_key` order rather than by clip id."""
        return self.sample is not None or self.balance is not None

    def to_dict(self) -> dict:
        return asdict(self)


# --- pure functions -------------------------------------------------------------------------------------------


def sample_key(seed: int, clip_id: str) -> str:
    """The clip's place in the random order of ``seed``: ``sha256("<seed>:<clip_id>")`` as 64 hex digits
    (DuckDB's ``sha256`` gives the same text, so the order is computed in SQL)."""
    return hashlib.sha256(f"{int(seed)}:{clip_id}".encode("utf-8")).hexdigest()


def split_unit(seed: int, video_id: str) -> float:
    """A number in [0, 1) fixed by ``(seed, video_id)``: the first 15 hex digits of
    ``sha256("<seed>:split:<video_id>")`` over 16**15."""
    digest = hashlib.sha256(f"{int(seed)}:split:{video_id}".encode("utf-8")).hexdigest()
    return int(digest[:_HASH_DIGITS], 16) / float(16**_HASH_DIGITS)


def split_of(video_id: str, seed: int, val_frac: float | None) -> str:
    """``"val"`` when :func:`split_unit` is below ``val_frac``, else ``"train"`` (always train when None/0)."""
    if not val_frac:
        return "train"
    return "val" if split_unit(seed, video_id) < val_frac else "train"


def balanced_quotas(group_sizes: Mapping[str, int], total: int | None) -> dict[str, int]:
    """How many clips each group gives (water filling).

    group_sizes: candidates per group label. total: clips wanted (``--sample``), or None for "every group gives
    as many as the smallest". Groups are visited smallest first; while the smallest fits in an equal share of
    what is left it gives all its clips; the rest get ``left // k`` each and the ``left % k`` remaining clips go
    one each to the groups first in label order. With ``total`` >= all candidates every group gives all.
    """
    sizes = {str(g): int(n) for g, n in group_sizes.items() if int(n) > 0}
    if not sizes:
        return {}
    if total is None:
        smallest = min(sizes.values())
        return {g: smallest for g in sorted(sizes)}
    left = max(int(total), 0)
    pending = sorted(sizes, key=lambda g: (sizes[g], g))
    quotas: dict[str, int] = {}
    while pending:
        share = left // len(pending)
        if sizes[pending[0]] <= share:
            g = pending.pop(0)
            quotas[g] = sizes[g]
            left -= sizes[g]
            continue
        extra = left - share * len(pending)
        for i, g in enumerate(sorted(pending)):
            quotas[g] = share + (1 if i < extra else 0)
        break
    return {g: quotas[g] for g in sorted(quotas)}


# --- SQL ------------------------------------------------------------------------------------------------------


@dataclass
class Selected:
    """The outcome of :func:`select_clips`.

    table: one row per selected clip (the joined clip + video columns, plus ``balance_group`` and
    ``sample_key``), ordered by ``clip_id``. clip_columns: the clips table's column names. group_sizes:
    candidates per balance group (one group ``(all)`` without ``--balance``). quotas: clips asked of each group
    (empty without ``--balance``).
    """

    table: object  # pyarrow.Table
    clip_columns: list[str]
    num_candidates: int
    group_sizes: dict[str, int]
    quotas: dict[str, int]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def joined_sql(clip_columns: list[str], video_columns: list[str]) -> str:
    """A SELECT of every clip with its video's columns that the clips table does not shadow."""
    shadowed = [c for c in video_columns if c in set(clip_columns)]
    exclude = f" EXCLUDE ({', '.join(_quote(c) for c in shadowed)})" if shadowed else ""
    return f"SELECT c.*, v.*{exclude} FROM clips c LEFT JOIN videos v ON v.video_id = c.video_id"


def _one_statement(sql: str) -> None:
    """Refuse SQL that is not exactly one statement (a predicate cannot smuggle in a second one)."""
    import duckdb

    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"expected one statement, got {len(statements)}")


def select_clips(con, spec: SelectionSpec, run_label: str = "RUN") -> Selected:
    """Run the selection ``spec`` on a (read-only) catalog connection; see the module docstring.

    Each statement over the catalog views reads every fragment's footer, which dominates on large catalogs, so
    the work is done in as few as possible: ``DESCRIBE clips``; then, without ``--sample``, ``--balance`` and
    ``--limit``, one query; otherwise one pass that keeps (clip id, sample key, group) of every candidate in a
    temporary table, the choice made on that table, and one pass that reads the chosen rows.

    Raises :class:`ConfigError` for a catalog without G1 motions, a bad ``--where`` predicate or ``--balance``
    expression (the message says how to list the columns of the run folder ``run_label``)."""
    import pyarrow as pa

    from catalog import db
    from catalog.schema import VIDEOS

    spec.validate()
    clip_columns = [r[0] for r in con.execute("DESCRIBE clips").fetchall()]
    if "g1_motion_path" not in clip_columns:
        raise ConfigError(f"the catalog in {run_label} has no G1 motions (no g1_motion_path column); run "
                          "`g1forge run` with this version to retarget its clips, then export")
    joined = joined_sql(clip_columns, list(VIDEOS.names))
    predicate = (spec.where or "").strip() or "TRUE"
    group_expr = f"coalesce(CAST(({spec.balance}\n) AS VARCHAR), '{NULL_GROUP}')" if spec.balance else "'(all)'"
    # user text is always followed by a newline so a trailing "--" comment cannot swallow the rest
    keyed = (
        f"WITH joined AS ({joined}), "
        "cand AS (SELECT * FROM joined WHERE status = 'ok' AND g1_motion_path IS NOT NULL "
        f"AND g1_motion_path <> '' AND ({predicate}\n)), "
        f"keyed AS (SELECT *, sha256('{int(spec.seed)}:' || clip_id) AS sample_key, {group_expr} AS balance_group "
        "FROM cand) "
    )

    def run(select_sql: str, params=None, prefix: str = ""):
        try:
            db.check_select_only(select_sql)  # user text cannot smuggle in a second statement (COPY, ...)
            _one_statement(prefix + select_sql)
            rel = con.sql(prefix + select_sql, params=params)
            return None if rel is None else rel.to_arrow_table()
        except Exception as exc:  # duckdb's own error types (parser, binder, conversion)
            raise _which_option(con, exc, spec, joined, run_label) from None

    if not spec.randomised and spec.limit is None:  # everything that matches: one pass
        table = run(keyed + "SELECT * FROM keyed ORDER BY clip_id")
        group_sizes = {"(all)": table.num_rows} if table.num_rows else {}
        table = _finish(table, spec, pa)
        return Selected(table, clip_columns, table.num_rows, group_sizes, {})

    run(keyed + "SELECT clip_id, sample_key, balance_group FROM keyed",
        prefix="CREATE OR REPLACE TEMP TABLE g1forge_candidates AS ")
    counts = con.sql("SELECT balance_group, count(*) AS n FROM g1forge_candidates GROUP BY 1 ORDER BY 1").fetchall()
    group_sizes = {str(g): int(n) for g, n in counts}
    num_candidates = sum(group_sizes.values())
    order = "sample_key, clip_id" if spec.randomised else "clip_id"
    cap = [n for n in (spec.sample, spec.limit) if n is not None]
    limit_sql = f" LIMIT {min(cap)}" if cap else ""
    quotas: dict[str, int] = {}
    params = None
    if spec.balance:
        quotas = balanced_quotas(group_sizes, spec.sample)
        labels = list(quotas) or [""]
        chosen = ("SELECT k.* FROM (SELECT *, row_number() OVER (PARTITION BY balance_group ORDER BY sample_key, "
                  "clip_id) AS _rank FROM g1forge_candidates) k JOIN (SELECT unnest($labels) AS _g, "
                  "unnest($quotas) AS _q) q ON q._g = k.balance_group WHERE k._rank <= q._q")
        params = {"labels": labels, "quotas": [quotas.get(g, 0) for g in labels]}
    else:
        chosen = "SELECT * FROM g1forge_candidates"
    con.execute(f"CREATE OR REPLACE TEMP TABLE g1forge_chosen AS SELECT clip_id, sample_key, balance_group "
                f"FROM ({chosen}) ORDER BY {order}{limit_sql}", params)
    table = run(f"WITH joined AS ({joined}) SELECT j.*, ch.sample_key, ch.balance_group FROM joined j "
                "JOIN g1forge_chosen ch ON ch.clip_id = j.clip_id ORDER BY j.clip_id")
    con.execute("DROP TABLE IF EXISTS g1forge_candidates")
    con.execute("DROP TABLE IF EXISTS g1forge_chosen")
    return Selected(_finish(table, spec, pa), clip_columns, num_candidates, group_sizes, quotas)


def _finish(table, spec: SelectionSpec, pa):
    """Order by clip id; ``balance_group`` is NULL without ``--balance``."""
    if table.num_rows:
        table = table.sort_by("clip_id")
    if not spec.balance:
        table = table.set_column(table.schema.get_field_index("balance_group"), "balance_group",
                                 pa.nulls(table.num_rows, pa.string()))
    return table


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _which_option(con, exc: Exception, spec: SelectionSpec, joined: str, run_label: str) -> ConfigError:
    """A :class:`ConfigError` naming the option at fault: ``--balance`` if its expression alone does not bind."""
    from catalog import db

    if spec.balance:
        probe = f"WITH joined AS ({joined}) SELECT CAST(({spec.balance}\n) AS VARCHAR) AS g FROM joined LIMIT 0"
        try:
            db.check_select_only(probe)
            con.sql(probe).fetchall()
        except Exception as bexc:  # duckdb's own error types
            return ConfigError(
                f"bad --balance expression {spec.balance!r}: {_first_line(bexc)}. It must be a column of the "
                "clips or videos table (e.g. source_kind, license, backend) or a SQL expression over them (e.g. "
                f"\"tags[1]\"); list the columns with `g1forge query {run_label} \"DESCRIBE clips\"` and "
                "\"DESCRIBE videos\"")
    return ConfigError(
        f"bad --where predicate {spec.where!r}: {_first_line(exc)}. It must be a SQL boolean expression over the "
        "clips table's columns (and its video's, e.g. license), e.g. \"duration_s > 3 AND video_id = "
        f"'file-ab12'\"; list the columns with `g1forge query {run_label} \"DESCRIBE clips\"`")
