"""Point-in-time (as-of) reads of Delta tables on either backend, as Spark temp views.

Spark SQL's ``delta.`<path>` TIMESTAMP AS OF '<ts>'`` / ``VERSION AS OF <n>`` and ``DESCRIBE HISTORY``
need delta-spark's SQL extension, which the embedded delta-rs backend does not have. This module
serves the same reads through :class:`~lgsid.storage.DeltaStore`: the commit history maps a timestamp
to a version, :meth:`DeltaStore.read` reads that version, and the result is registered as a temp
view. :func:`run_sql` rewrites those clauses in a query into such views, so the queries of
``sql/ranking_join_example.sql`` run unchanged on both backends::

    from lgsid.storage.as_of import register_as_of, run_sql
    register_as_of(store, "item_sid_features", "isf_20240301", timestamp="2024-03-01 23:59:59")
    run_sql(store, open("sql/ranking_join_example.sql").read())   # every statement, in order

Timestamps without a zone are UTC (the pipeline's ``spark.sql.session.timeZone``).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from lgsid.errors import LGSIDError
from lgsid.fs import is_uri

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from lgsid.storage.delta import DeltaStore


def _utc(ts) -> datetime:
    """``ts`` (ISO string, datetime, pandas Timestamp, or epoch milliseconds) as an aware UTC datetime."""
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts / 1000.0, tz=timezone.utc)
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.strip())
        except ValueError:
            raise LGSIDError(f"as-of timestamp {ts!r} is not 'YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH:MM]'") from None
    if hasattr(ts, "to_pydatetime"):
        ts = ts.to_pydatetime()
    if not isinstance(ts, datetime):
        raise LGSIDError(f"as-of timestamp {ts!r} is not a timestamp")
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def version_as_of(store: "DeltaStore", name: str, timestamp) -> int:
    """The version of table ``name`` that was current at ``timestamp``: the newest commit at or before it.

    Like Delta's ``TIMESTAMP AS OF``, a timestamp before the first commit is an error. Unlike it, a
    timestamp after the newest commit resolves to the newest version (its state is known up to now),
    so "the end of today" works.

    Raises:
        LGSIDError: the timestamp precedes the table's first commit, or is not a timestamp.
        TableNotFoundError: the table does not exist.
    """
    t = _utc(timestamp)
    commits = sorted((int(h["version"]), _utc(h["timestamp"])) for h in store.history(name))
    at_or_before = [v for v, ct in commits if ct <= t]
    if not at_or_before:
        first_v, first_t = commits[0]
        raise LGSIDError(
            f"as-of {t.isoformat()} is before the first commit of table '{name}' "
            f"(version {first_v} at {first_t.isoformat()})"
        )
    return at_or_before[-1]


def register_as_of(store: "DeltaStore", name: str, view: str, *, timestamp=None, version: int | None = None) -> "DataFrame":
    """Register table ``name`` as of ``timestamp`` or ``version`` (or its current version) as temp view ``view``.

    Returns:
        The registered DataFrame.
    """
    if timestamp is not None and version is not None:
        raise LGSIDError("register_as_of: give timestamp or version, not both")
    if timestamp is not None:
        version = version_as_of(store, name, timestamp)
    df = store.read(name, version)
    df.createOrReplaceTempView(view)
    return df


def register_history(store: "DeltaStore", name: str, view: str) -> "DataFrame":
    """Register the commit history of ``name`` (version, timestamp UTC, operation) as temp view ``view``."""
    rows = [(int(h["version"]), _utc(h["timestamp"]).replace(tzinfo=None), str(h.get("operation", ""))) for h in store.history(name)]
    df = store.spark.createDataFrame(rows, "version BIGINT, timestamp TIMESTAMP, operation STRING")
    df.createOrReplaceTempView(view)
    return df


_DELTA_REF = re.compile(
    r"delta\.`(?P<path>[^`]+)`"
    r"(?:\s+(?:TIMESTAMP\s+AS\s+OF\s+'(?P<ts>[^']+)'|VERSION\s+AS\s+OF\s+(?P<ver>\d+)))?",
    re.IGNORECASE,
)
_HISTORY = re.compile(r"^\s*DESCRIBE\s+HISTORY\s+delta\.`(?P<path>[^`]+)`\s*$", re.IGNORECASE)


def _table_name(store: "DeltaStore", path: str) -> str:
    """The store's table name of a ``delta.`<path>``` reference (a path under ``storage.root``)."""
    root = store.root.rstrip("/")
    full = path if is_uri(path) or os.path.isabs(path) else os.path.abspath(path)
    if full.startswith("file://") and not root.startswith("file://"):
        full = full[len("file://"):]
    if not full.startswith(root + "/"):
        raise LGSIDError(f"delta.`{path}` is not a table under storage.root {store.root}")
    return full[len(root) + 1:].strip("/")


def rewrite(store: "DeltaStore", statement: str) -> str:
    """``statement`` with every ``delta.`<path>` [TIMESTAMP|VERSION AS OF ...]`` replaced by a temp view.

    ``DESCRIBE HISTORY delta.`<path>``` becomes a SELECT over :func:`register_history`'s view.
    """
    m = _HISTORY.match(statement)
    if m:
        name = _table_name(store, m.group("path"))
        view = f"{re.sub(r'[^0-9A-Za-z]', '_', name)}__history"
        register_history(store, name, view)
        return f"SELECT version, timestamp, operation FROM {view} ORDER BY version DESC"

    def view_for(m: re.Match) -> str:
        name = _table_name(store, m.group("path"))
        base = re.sub(r"[^0-9A-Za-z]", "_", name)
        if m.group("ts"):
            v = version_as_of(store, name, m.group("ts"))
        elif m.group("ver"):
            v = int(m.group("ver"))
        else:
            v = None
        view = f"{base}__v{v}" if v is not None else f"{base}__current"
        register_as_of(store, name, view, version=v)
        return view

    return _DELTA_REF.sub(view_for, statement)


def statements(script: str) -> list[str]:
    """The SQL statements of ``script``: ``--`` comments dropped, split on ``;`` at the end of a line."""
    text = "\n".join(re.sub(r"--.*$", "", ln) for ln in script.splitlines())
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


def run_sql(store: "DeltaStore", script: str) -> list["DataFrame"]:
    """Run every statement of ``script`` on ``store.spark`` with Delta time travel served by this module.

    Returns:
        One DataFrame per statement, in order.
    """
    return [store.spark.sql(rewrite(store, s)) for s in statements(script)]
