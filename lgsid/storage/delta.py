"""Delta tables with two backends behind one interface.

:class:`DeltaStore` holds what both backends share: table paths and name checks, conforming a
DataFrame to the catalogue schema (:mod:`lgsid.tables`), NOT NULL / CHECK validation before anything
is written, duplicate-key checks for MERGE, error wrapping ("nothing was committed"), adding catalogue
columns a stored table lacks, and the driver-side pandas read. ``DeltaStore(spark, cfg)`` is a
factory: it returns the backend's subclass.

* :class:`SparkDeltaStore` (``spark``): native Delta through the session's delta-spark jars (any real
  cluster, or ``--packages io.delta:delta-spark_2.13:4.0.x``). Reads and writes use Spark's ``delta``
  format; MERGE and history use delta-spark's Python API. Nothing is collected to the driver. Not
  exercised on the project's test machines (the jars cannot be downloaded there).
* :class:`DeltaRsStore` (``deltars``): delta-rs (``deltalake``) on the driver, for the embedded default.
  A write stages the Spark DataFrame as Parquet (executors write in parallel), then streams the staged
  files as Arrow record batches into one delta-rs commit; a read hands the snapshot's file list to
  ``spark.read.parquet``. MERGE is computed in Spark and committed as one transaction of remove and
  add actions (:meth:`DeltaRsStore._commit_merge`), because delta-rs' own MERGE writes Parquet whose
  embedded Arrow schema uses view types (``Utf8View``) that pyarrow 14 cannot read.

Both backends write the same Delta protocol, schema, NOT NULL columns and CHECK constraints, so a
table written by one reads through the other, and every file is readable by Spark, by
``deltalake.DeltaTable(...).to_pandas()`` and by ``pyarrow.dataset``. Every data write is one commit:
a failure before the commit leaves the previous version as it was, and a commit that finds the table
changed since it was read fails with :class:`ConcurrentWriteError` instead of overwriting the other
writer's rows.
"""

from __future__ import annotations

import json
import abc
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as pads

from lgsid.config import StorageConfig
from lgsid.errors import ConfigError, LGSIDError, TableNotFoundError, ValidationError
from lgsid.fs import is_uri, resolve as resolve_fs
from lgsid.tables import TableSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

PAUSE_ENV = "LGSID_PAUSE_AT_COMMIT"
"""Test hook: when set to a file path, a data commit creates that file and then sleeps (up to 10 min)
right before committing, so a test can kill the process at the commit point."""

TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
DELTARS_SCHEMES = ("file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure", "memory")
"""URI schemes of ``storage.root`` the deltars backend can open (delta-rs' object stores)."""


class ConcurrentWriteError(LGSIDError):
    """Another writer committed to the table between this write's read and its commit; nothing was committed."""


def spark_has_delta(spark: "SparkSession") -> bool:
    """True when the session can use native Delta (the delta-spark jars are on its classpath)."""
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except Exception:
        return False


def spark_schema(ts: TableSpec) -> "StructType":
    """The Spark schema of a catalogue table; NOT NULL columns are non-nullable."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    parsed = _parse_datatype_string(ts.schema)
    return StructType([StructField(f.name, f.dataType, f.name not in ts.not_null) for f in parsed.fields])


def arrow_schema(ts: TableSpec) -> pa.Schema:
    """The Arrow schema of a catalogue table (timestamps as microseconds UTC, as Delta stores them)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    sch = to_arrow_schema(spark_schema(ts))
    return pa.schema([pa.field(f.name, f.type, f.name not in ts.not_null) for f in sch])


@dataclass(frozen=True)
class WriteResult:
    """What a write committed: table, Delta version and rows in the new snapshot."""

    table: str
    version: int
    rows: int


def _catalogue_spec(name: str) -> TableSpec | None:
    from lgsid.tables import CATALOGUE

    return CATALOGUE.get(name)


def _pause_at_commit(name: str) -> None:
    """The :data:`PAUSE_ENV` test hook (a no-op unless the variable is set)."""
    flag = os.environ.get(PAUSE_ENV)
    if flag:
        with open(flag, "w") as f:
            f.write(f"{os.getpid()} {name}\n")
        time.sleep(600)


class DeltaStore(abc.ABC):
    """Reads, writes and merges the catalogue's Delta tables under ``cfg.root``.

    ``DeltaStore(spark, cfg)`` returns a :class:`SparkDeltaStore` or a :class:`DeltaRsStore`
    (``cfg.backend``; ``'auto'`` picks ``spark`` when the session has Delta's jars).

    Args:
        spark: The active SparkSession.
        cfg: Storage config.

    Raises:
        LGSIDError: ``backend='spark'`` without the jars.
        ConfigError: ``storage.root`` has a URI scheme the backend cannot open.
    """

    backend = ""

    def __new__(cls, spark: "SparkSession", cfg: StorageConfig):
        if cls is DeltaStore:
            has = spark_has_delta(spark)
            if cfg.backend == "spark" and not has:
                raise LGSIDError(
                    "storage.backend=spark but the Spark session has no Delta jars; start it with "
                    "--packages io.delta:delta-spark_2.13:4.0.0 (and the Delta SQL extension) or set storage.backend=deltars"
                )
            cls = SparkDeltaStore if (cfg.backend == "spark" or (cfg.backend == "auto" and has)) else DeltaRsStore
        return super().__new__(cls)

    def __init__(self, spark: "SparkSession", cfg: StorageConfig):
        self.spark = spark
        self.cfg = cfg
        self.root = cfg.root if is_uri(cfg.root) else os.path.abspath(cfg.root)
        self.staging = cfg.staging_dir if is_uri(cfg.staging_dir) else os.path.abspath(cfg.staging_dir)

    # ------------------------------------------------------------------ paths & metadata
    def path(self, name: str) -> str:
        """Location of table ``name``.

        Raises:
            ValidationError: ``name`` is not a plain table name (e.g. ``../x`` or ``a/b``).
        """
        if not TABLE_NAME.match(name or ""):
            raise ValidationError(
                f"invalid table name {name!r}: a table name is letters, digits, '_' and '-' (no '/', '..' or URI), "
                f"and lives under storage.root {self.root}"
            )
        return f"{self.root.rstrip('/')}/{name}"

    def _require(self, name: str) -> None:
        if not self.exists(name):
            ts = _catalogue_spec(name)
            hint = f" Run `lgsid {ts.written_by}` first." if ts and ts.written_by else ""
            raise TableNotFoundError(f"Delta table '{name}' not found at {self.path(name)}.{hint}")

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether a Delta table exists at ``path(name)``."""

    @abc.abstractmethod
    def version(self, name: str) -> int | None:
        """Current version of ``name``, or ``None`` when it does not exist."""

    @abc.abstractmethod
    def history(self, name: str, limit: int | None = None) -> list[dict]:
        """Commit history, newest first: dicts with at least ``version``, ``timestamp``, ``operation``."""

    @abc.abstractmethod
    def properties(self, name: str) -> dict:
        """Name, description (with primary key) and configuration recorded in the table's Delta metadata."""

    @abc.abstractmethod
    def stored_columns(self, name: str) -> list[str]:
        """Column names in the stored table's Delta schema (may lack catalogue columns added since it was written)."""

    # ------------------------------------------------------------------ reads
    @abc.abstractmethod
    def read(self, name: str, version: int | None = None) -> "DataFrame":
        """Table ``name`` (optionally as of ``version``) as a Spark DataFrame."""

    @abc.abstractmethod
    def arrow_batches(self, name: str, columns: Sequence[str] | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Stream the current snapshot as Arrow record batches on the driver."""

    @abc.abstractmethod
    def count(self, name: str) -> int:
        """Rows in the current snapshot."""

    def to_pandas(self, name: str, columns: Sequence[str] | None = None):
        """The whole table as pandas. For small tables only (models, metrics, tests)."""
        batches = list(self.arrow_batches(name, columns))
        if not batches:
            df = self.read(name)
            return (df.select(*columns) if columns else df).limit(0).toPandas()
        return pa.Table.from_batches(batches).to_pandas()

    # ------------------------------------------------------------------ checks
    def conform(self, df: "DataFrame", ts: TableSpec) -> "DataFrame":
        """Select and cast ``df`` to the table's schema; a missing column is a :class:`ValidationError`."""
        from pyspark.sql import functions as F

        target = spark_schema(ts)
        missing = [f.name for f in target.fields if f.name not in df.columns]
        if missing:
            raise ValidationError(f"cannot write table '{ts.name}': missing column(s) {missing}; got {df.columns}")
        return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in target.fields])

    def check_not_null(self, df: "DataFrame", ts: TableSpec) -> None:
        """Fail with the first offending rows when a NOT NULL column holds nulls (before anything is written)."""
        self._check_rows(df, ts, nulls=True, checks=False)

    def check_constraints(self, df: "DataFrame", ts: TableSpec) -> None:
        """Fail with the first offending rows when a row violates a CHECK constraint (before anything is written).

        Mirrors Delta's rule: a row passes only when the expression is TRUE (NULL counts as a violation).
        """
        self._check_rows(df, ts, nulls=False, checks=True)

    def _check_rows(self, df: "DataFrame", ts: TableSpec, nulls: bool = True, checks: bool = True) -> None:
        """NOT NULL and CHECK constraints in one Spark job; raises naming the first offending rows by key."""
        from pyspark.sql import functions as F

        flags = {}
        if nulls:
            flags.update({f"null:{c}": F.col(c).isNull() for c in ts.not_null})
        if checks:
            flags.update({f"check:{c}": ~F.coalesce(F.expr(e), F.lit(False)) for c, e in ts.checks.items()})
        if not flags:
            return
        cond = None
        for f in flags.values():
            cond = f if cond is None else (cond | f)
        aliases = {k: f"__flag{i}" for i, k in enumerate(flags)}
        bad = df.select("*", *[f.alias(aliases[k]) for k, f in flags.items()]).where(cond).limit(3).collect()
        if not bad:
            return
        keys = [{k: r[k] for k in ts.primary_key} for r in bad]
        hit = [k for k in flags if any(r[aliases[k]] for r in bad)]
        null_cols = sorted(k.split(":", 1)[1] for k in hit if k.startswith("null:"))
        if null_cols:
            raise ValidationError(f"table '{ts.name}': null in NOT NULL column(s) {null_cols}; first offending rows (by key): {keys}")
        exprs = {k.split(":", 1)[1]: ts.checks[k.split(":", 1)[1]] for k in hit}
        raise ValidationError(f"table '{ts.name}': rows violate CHECK constraint(s) {exprs}; first offending rows (by key): {keys}; nothing was written")

    # ------------------------------------------------------------------ writes
    def write(self, df: "DataFrame", name: str, mode: str = "overwrite") -> WriteResult:
        """Write ``df`` as table ``name`` in one commit (``mode`` = overwrite | append).

        The DataFrame is conformed to the catalogue schema and NOT NULL columns are checked first;
        on any error nothing is committed and the previous version stays current.

        Raises:
            ValidationError: a missing column, a NOT NULL or CHECK violation, a bad table name.
            ConcurrentWriteError: another writer committed while this one wrote (deltars backend).
            LGSIDError: the write failed for another reason (the message says nothing was committed).
        """
        ts = _catalogue_spec(name)
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be 'overwrite' or 'append', got {mode!r}")
        self.path(name)  # checks the name
        before = self.version(name)

        def commit() -> None:
            data = df
            if ts is not None:
                data = self.conform(df, ts)
                self._check_rows(data, ts)
            self._commit_write(data, name, ts, mode)

        self._guarded(name, before, commit)
        return self._result(name)

    def merge(self, df: "DataFrame", name: str, keys: Sequence[str] | None = None) -> WriteResult:
        """Upsert ``df`` into ``name`` on ``keys`` (default: the table's primary key) in one commit.

        Matched rows are updated, unmatched source rows inserted, target rows absent from the
        source kept. Creates the table on first use. The source must be unique on ``keys``.

        Raises:
            ValidationError: duplicate source keys, or as :meth:`write`.
            ConcurrentWriteError: another writer committed while this one merged.
        """
        ts = _catalogue_spec(name)
        keys = list(keys or (ts.primary_key if ts else ()))
        if not keys:
            raise ValueError(f"merge into '{name}' needs keys")
        self.path(name)
        before = self.version(name)
        if before is None:
            self._guarded(name, before, lambda: self._check_unique(df, name, keys))
            return self.write(df, name, mode="overwrite")

        def commit() -> None:
            data = df
            if ts is not None:
                data = self.conform(df, ts)
                self._check_rows(data, ts)
            self._check_unique(data, name, keys)
            self.add_missing_columns(name)
            self._commit_merge(data, name, ts, keys)

        self._guarded(name, before, commit)
        return self._result(name)

    @staticmethod
    def _check_unique(df: "DataFrame", name: str, keys: list[str]) -> None:
        from pyspark.sql import functions as F

        dup = df.groupBy(*keys).count().where(F.col("count") > 1).limit(3).collect()
        if dup:
            raise ValidationError(f"merge into '{name}': source has duplicate keys {keys}: {[r.asDict() for r in dup]}")

    def _guarded(self, name: str, before: int | None, commit) -> None:
        """Run ``commit``; any failure that is not already an :class:`LGSIDError` says nothing was committed."""
        try:
            commit()
        except LGSIDError:
            raise
        except Exception as e:
            state = f"still at version {before}" if before is not None else "the table was not created"
            raise LGSIDError(f"writing Delta table '{name}' failed; nothing was committed ({state}): {type(e).__name__}: {e}") from e

    def _result(self, name: str) -> WriteResult:
        v = self.version(name)
        assert v is not None
        return WriteResult(name, v, self.count(name))

    def add_missing_columns(self, name: str) -> list[str]:
        """Append the catalogue columns the stored table lacks (one metadata commit; no data rewritten).

        New columns are nullable (Delta cannot add a NOT NULL column to a table that has rows); every
        new write is still checked against the catalogue's NOT NULL list. Returns the added names.
        """
        ts = _catalogue_spec(name)
        if ts is None or not self.exists(name):
            return []
        have = set(self.stored_columns(name))
        missing = [f for f in arrow_schema(ts) if f.name not in have]
        if not missing:
            return []
        self._add_columns(name, ts, missing)
        added = [f.name for f in missing]
        log.warning("table '%s' predates column(s) %s: added them (nullable; existing rows hold null)", name, added)
        return added

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _commit_write(self, df: "DataFrame", name: str, ts: TableSpec | None, mode: str) -> None:
        """Commit ``df`` (already conformed and checked) to ``name`` in one Delta commit (``overwrite`` or ``append``)."""

    @abc.abstractmethod
    def _commit_merge(self, df: "DataFrame", name: str, ts: TableSpec | None, keys: list[str]) -> None:
        """Upsert ``df`` into ``name`` on ``keys`` in one Delta commit."""

    @abc.abstractmethod
    def _add_columns(self, name: str, ts: TableSpec, fields: list[pa.Field]) -> None:
        """Add the nullable columns ``fields`` to the stored schema of ``name``."""


class SparkDeltaStore(DeltaStore):
    """Native Delta through delta-spark (``storage.backend=spark``): everything stays in Spark."""

    backend = "spark"

    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable as SparkDeltaTable

        return SparkDeltaTable.isDeltaTable(self.spark, self.path(name))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return int(self.history(name, limit=1)[0]["version"])

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        from delta.tables import DeltaTable as SparkDeltaTable

        self._require(name)
        rows = SparkDeltaTable.forPath(self.spark, self.path(name)).history(limit or 1_000_000).collect()
        return [{"version": r["version"], "timestamp": r["timestamp"], "operation": r["operation"]} for r in rows]

    def properties(self, name: str) -> dict:
        row = self.spark.sql(f"DESCRIBE DETAIL delta.`{self.path(name)}`").collect()[0]
        return {"name": row["name"], "description": row["description"], "properties": dict(row["properties"])}

    def stored_columns(self, name: str) -> list[str]:
        self._require(name)
        return list(self.spark.read.format("delta").load(self.path(name)).columns)

    def read(self, name: str, version: int | None = None) -> "DataFrame":
        self._require(name)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(name))

    def arrow_batches(self, name: str, columns: Sequence[str] | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        self._require(name)
        df = self.read(name)
        if columns:
            df = df.select(*columns)
        yield from df.toArrow().to_batches(batch_size)  # cluster users should stay in Spark

    def count(self, name: str) -> int:
        return self.read(name).count()

    def _commit_write(self, df: "DataFrame", name: str, ts: TableSpec | None, mode: str) -> None:
        """Commit ``df`` (already conformed and checked) to ``name`` in one Delta commit (``overwrite`` or ``append``)."""
        self._ensure_table(ts, name)
        _pause_at_commit(name)
        # An overwrite of a catalogue table takes the catalogue's schema (a store written by an older
        # release may hold a column the catalogue has since dropped); appends keep the stored schema.
        overwrite_schema = mode == "overwrite" and ts is not None
        df.write.format("delta").mode(mode).option("overwriteSchema", str(overwrite_schema).lower()).save(self.path(name))

    def _commit_merge(self, df: "DataFrame", name: str, ts: TableSpec | None, keys: list[str]) -> None:
        """Upsert ``df`` into ``name`` on ``keys`` in one Delta commit."""
        from delta.tables import DeltaTable as SparkDeltaTable

        pred = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        _pause_at_commit(name)
        (
            SparkDeltaTable.forPath(self.spark, self.path(name)).alias("t")
            .merge(df.alias("s"), pred)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    def _add_columns(self, name: str, ts: TableSpec, fields: list[pa.Field]) -> None:
        """Add the nullable columns ``fields`` to the stored schema of ``name``."""
        types = {f.name: f.dataType.simpleString() for f in spark_schema(ts).fields}
        cols = ", ".join(f"`{f.name}` {types[f.name]}" for f in fields)
        self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` ADD COLUMNS ({cols})")

    def _ensure_table(self, ts: TableSpec | None, name: str) -> None:
        if ts is None:
            return
        if self.exists(name):
            self.add_missing_columns(name)
            return
        from delta.tables import DeltaTable as SparkDeltaTable

        b = SparkDeltaTable.createIfNotExists(self.spark).location(self.path(name)).addColumns(spark_schema(ts))
        b = b.comment(ts.description).property("lgsid.primary_key", ",".join(ts.primary_key))
        b.execute()
        for cname, expr in ts.checks.items():
            self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` ADD CONSTRAINT {cname} CHECK ({expr})")


class DeltaRsStore(DeltaStore):
    """delta-rs on the driver (``storage.backend=deltars``, the embedded default); Spark computes and stages."""

    backend = "deltars"

    def __init__(self, spark: "SparkSession", cfg: StorageConfig):
        super().__init__(spark, cfg)
        for key, loc in (("storage.root", cfg.root), ("storage.staging_dir", cfg.staging_dir)):
            scheme = loc.split(":", 1)[0].lower() if is_uri(loc) else "file"
            if scheme not in DELTARS_SCHEMES:
                raise ConfigError(
                    f"invalid value for '{key}': {loc!r} uses URI scheme '{scheme}', which the deltars backend cannot open; "
                    f"use a local path or one of {', '.join(s + '://' for s in DELTARS_SCHEMES)}"
                )

    def _dt(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(self.path(name), version=version, storage_options=self.cfg.storage_options or None)

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.path(name), storage_options=self.cfg.storage_options or None)

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return int(self._dt(name).version())

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        """delta-rs history; a MERGE committed as remove + add files (see ``_commit_merge``) reports
        ``operation`` ``MERGE`` (from its ``lgsid.operation`` commit info), as native Delta does."""
        self._require(name)
        return [{**h, "operation": h.get("lgsid.operation", h.get("operation"))} for h in self._dt(name).history(limit)]

    def properties(self, name: str) -> dict:
        md = self._dt(name).metadata()
        return {"name": md.name, "description": md.description, "properties": dict(md.configuration)}

    def stored_columns(self, name: str) -> list[str]:
        self._require(name)
        return [f.name for f in self._dt(name).schema().fields]

    def _spark_schema_of(self, name: str, dt) -> "StructType":
        from pyspark.sql.pandas.types import from_arrow_schema

        ts = _catalogue_spec(name)
        return spark_schema(ts) if ts else from_arrow_schema(pa.schema(dt.schema().to_arrow()))

    def _arrow_schema_of(self, name: str, dt) -> pa.Schema:
        ts = _catalogue_spec(name)
        return arrow_schema(ts) if ts else pa.schema(dt.schema().to_arrow())

    def read(self, name: str, version: int | None = None) -> "DataFrame":
        self._require(name)
        dt = self._dt(name, version)
        files = dt.file_uris()
        schema = self._spark_schema_of(name, dt)
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    def arrow_batches(self, name: str, columns: Sequence[str] | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Reads the snapshot's Parquet files with pyarrow, so nothing larger than one batch is held.

        Files written before a column was added lack it, and files differ in nullability, so every
        batch is cast to one schema: the table's, with every field nullable (missing columns read as null).
        """
        self._require(name)
        dt = self._dt(name)
        files = dt.file_uris()
        if not files:
            return
        target = pa.schema([f.with_nullable(True) for f in self._arrow_schema_of(name, dt)])
        if columns:
            target = pa.schema([target.field(c) for c in columns])
        fs, _ = resolve_fs(files[0])
        for f in files:
            ds = pads.dataset([_fs_path(f)], format="parquet", filesystem=fs)
            for b in ds.to_batches(columns=[c for c in target.names if c in ds.schema.names], batch_size=batch_size):
                if b.num_rows:
                    t = pa.Table.from_batches([b])
                    for fld in target:
                        if fld.name not in t.column_names:
                            t = t.append_column(fld.name, pa.nulls(len(t), fld.type))
                    yield from t.select(target.names).cast(target).to_batches()

    def count(self, name: str) -> int:
        """Rows in the current snapshot, from Delta's file statistics."""
        adds = pa.table(self._dt(name).get_add_actions(flatten=True))
        nums = adds.column("num_records").to_pylist() if "num_records" in adds.column_names else []
        if any(n is None for n in nums):  # statistics missing: scan
            return self.read(name).count()
        return int(sum(nums))

    def _commit_write(self, df: "DataFrame", name: str, ts: TableSpec | None, mode: str) -> None:
        """Commit ``df`` (already conformed and checked) to ``name`` in one Delta commit (``overwrite`` or ``append``)."""
        # Stage first (the step that evaluates the DataFrame and may fail), then create the table if
        # needed and commit once: a failure leaves no new version, not even an empty table.
        from deltalake import CommitProperties, write_deltalake
        from deltalake.exceptions import CommitFailedError

        with self._staged(df) as staged:
            reader = _staged_reader(staged, df)
            self._ensure_table(ts, name, df)
            _pause_at_commit(name)
            try:
                write_deltalake(
                    self.path(name),
                    reader,
                    mode=mode,
                    # as the Spark backend: an overwrite of a catalogue table takes the catalogue's schema
                    schema_mode="overwrite" if mode == "overwrite" and ts is not None else None,
                    storage_options=self.cfg.storage_options or None,
                    writer_properties=_writer_properties(ts),
                    commit_properties=CommitProperties(custom_metadata={"lgsid.table": name}),
                )
            except CommitFailedError as e:
                raise ConcurrentWriteError(f"table '{name}': another writer committed first; nothing was committed ({e}); rerun the step") from None
            except Exception as e:  # delta-rs raises its own DeltaError for CHECK violations
                if "failed validation check" in str(e):
                    raise ValidationError(f"table '{name}': rows violate a CHECK constraint {ts.checks if ts else ''}: {e}") from None
                raise

    def _commit_merge(self, df: "DataFrame", name: str, ts: TableSpec | None, keys: list[str]) -> None:
        """Upsert ``df`` into ``name`` on ``keys`` in one Delta commit."""
        """MERGE as copy-on-write in one commit: remove the files holding a source key, add their rewrite.

        The rewrite of a touched file keeps its rows whose key is not in the source; the new files
        hold those rows plus every source row (updates and inserts). Files without a source key stay.
        The commit is pinned to the version read (no retries), so a concurrent commit makes this one
        fail with :class:`ConcurrentWriteError` rather than drop the other writer's rows.
        """
        from deltalake import CommitProperties
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction
        from deltalake._internal import RemoveAction
        from pyspark.sql import functions as F

        dt = self._dt(name)
        read_version = dt.version()
        spark_sch = self._spark_schema_of(name, dt)
        cols = [f.name for f in spark_sch.fields]
        adds = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pylist()
        uri_of = {a["path"]: _join(self.path(name), a["path"]) for a in adds}
        with self._staged(df) as src_dir:
            src = self.spark.read.parquet(src_dir).select(*cols)
            src_keys = src.select(*keys).distinct()
            touched: list[dict] = []
            if adds:
                target = self.spark.read.schema(spark_sch).parquet(*uri_of.values())
                hit = {_norm_uri(r[0]) for r in target.select(*keys).withColumn("__file", F.input_file_name())
                       .join(src_keys, keys, "left_semi").select("__file").distinct().collect()}
                touched = [a for a in adds if _norm_uri(uri_of[a["path"]]) in hit]
            new = src
            if touched:
                kept = self.spark.read.schema(spark_sch).parquet(*[uri_of[a["path"]] for a in touched]).join(src_keys, keys, "left_anti")
                new = kept.select(*cols).unionByName(src)
            with self._staged(new) as new_dir:
                written = self._write_data_files(name, ts, new_dir, self._arrow_schema_of(name, dt))
        now = int(time.time() * 1000)
        actions = [RemoveAction(a["path"], True, now, a["size_bytes"]) for a in touched]
        actions += [AddAction(rel, size, {}, now, True, stats) for rel, size, stats in written]
        try:
            _pause_at_commit(name)
            dt.create_write_transaction(
                actions, mode="append", schema=dt.schema(),
                commit_properties=CommitProperties(
                    custom_metadata={"lgsid.table": name, "lgsid.operation": "MERGE", "lgsid.merge_keys": ",".join(keys),
                                     "lgsid.files_rewritten": len(touched), "readVersion": read_version},
                    max_commit_retries=0,
                ),
            )
        except BaseException as e:
            for rel, _, _ in written:
                _delete(_join(self.path(name), rel))
            if isinstance(e, CommitFailedError):
                now_v = self.version(name)
                raise ConcurrentWriteError(
                    f"merge into '{name}' conflicts with a concurrent commit: read version {read_version}, the table is now at "
                    f"version {now_v}; nothing was committed by this run (rerun the step to merge into the new version)"
                ) from None
            raise

    def _write_data_files(self, name: str, ts: TableSpec | None, staged_dir: str, schema: pa.Schema,
                          max_rows_per_file: int = 1_000_000) -> list[tuple[str, int, str]]:
        """Stream staged Parquet into new data files of table ``name`` with pyarrow (plain, non-view Arrow types).

        Returns:
            ``(relative path, size in bytes, Delta stats JSON)`` per file; stats hold ``numRecords``,
            ``nullCount`` per top-level column, and exact ``minValues``/``maxValues`` of string and
            integer columns.
        """
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        file_schema = pa.schema([f.with_nullable(True) for f in schema])
        fs, table_dir = resolve_fs(self.path(name))
        ds = pads.dataset(staged_dir, format="parquet")
        out: list[tuple[str, int, str]] = []
        writer = sink = None
        rel, rows, nulls, lo, hi = "", 0, {}, {}, {}

        def close() -> None:
            nonlocal writer, sink
            if writer is None:
                return
            writer.close()
            sink.close()
            size = fs.get_file_info(f"{table_dir}/{rel}").size
            stats = {"numRecords": rows, "nullCount": nulls, "minValues": lo, "maxValues": hi}
            out.append((rel, int(size), json.dumps(stats, default=str)))
            writer = sink = None

        def fold(stat: dict, k: str, v, pick) -> None:
            if v is not None:
                stat[k] = v if k not in stat else pick(stat[k], v)

        try:
            for b in ds.to_batches(batch_size=65536):
                if not b.num_rows:
                    continue
                t = pa.Table.from_batches([b]).select(file_schema.names).cast(file_schema)
                if writer is None:
                    rel = f"part-{uuid.uuid4().hex}-lgsid.snappy.parquet"
                    sink = fs.open_output_stream(f"{table_dir}/{rel}")
                    writer = pq.ParquetWriter(sink, file_schema, compression="snappy")
                    rows, nulls, lo, hi = 0, {f.name: 0 for f in file_schema if not pa.types.is_struct(f.type)}, {}, {}
                writer.write_table(t, row_group_size=(ts.row_group_rows if ts and ts.row_group_rows else None))
                rows += t.num_rows
                for f in file_schema:
                    col = t.column(f.name)
                    if f.name in nulls:
                        nulls[f.name] += col.null_count
                    if pa.types.is_string(f.type) or pa.types.is_integer(f.type):
                        mm = pc.min_max(col).as_py()
                        fold(lo, f.name, mm["min"], min)
                        fold(hi, f.name, mm["max"], max)
                if rows >= max_rows_per_file:
                    close()
            close()
        except BaseException:
            if writer is not None:
                writer.close()
                sink.close()
                out.append((rel, 0, ""))
            for r, _, _ in out:
                _delete(f"{self.path(name).rstrip('/')}/{r}")
            raise
        return out

    def _add_columns(self, name: str, ts: TableSpec, fields: list[pa.Field]) -> None:
        """Add the nullable columns ``fields`` to the stored schema of ``name``."""
        from deltalake import Schema

        self._dt(name).alter.add_columns(Schema.from_arrow(pa.schema([f.with_nullable(True) for f in fields])).fields)

    def _ensure_table(self, ts: TableSpec | None, name: str, df: "DataFrame") -> None:
        from deltalake import DeltaTable

        if self.exists(name):
            self.add_missing_columns(name)
            return
        if ts is not None:
            schema = arrow_schema(ts)
            desc = f"{ts.description} [primary key: {', '.join(ts.primary_key)}]"
        else:
            from pyspark.sql.pandas.types import to_arrow_schema

            schema = to_arrow_schema(df.schema)
            desc = name
        dt = DeltaTable.create(
            self.path(name), schema, mode="ignore", name=name, description=desc,
            storage_options=self.cfg.storage_options or None,
        )
        if ts is not None and ts.checks:
            dt.alter.add_constraint(dict(ts.checks))

    # ------------------------------------------------------------------ staging
    class _Staged:
        """Context manager: ``df`` written as Parquet under the staging dir; yields the directory, removes it on exit."""

        def __init__(self, store: "DeltaRsStore", df: "DataFrame"):
            self.store, self.df = store, df
            self.dir = f"{store.staging.rstrip('/')}/{uuid.uuid4().hex}"

        def __enter__(self) -> str:
            try:
                self.df.write.mode("overwrite").parquet(self.dir)
            except BaseException:  # __exit__ is not called when __enter__ raises
                self.__exit__()
                raise
            return self.dir

        def __exit__(self, *exc) -> None:
            if not is_uri(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)

    def _staged(self, df: "DataFrame") -> "DeltaRsStore._Staged":
        return DeltaRsStore._Staged(self, df)


def _staged_reader(staged_dir: str, df: "DataFrame") -> pa.RecordBatchReader:
    """The staged Parquet as one RecordBatchReader in the DataFrame's Arrow schema."""
    from pyspark.sql.pandas.types import to_arrow_schema

    target = to_arrow_schema(df.schema)
    ds = pads.dataset(staged_dir, format="parquet")

    def batches() -> Iterator[pa.RecordBatch]:
        for b in ds.to_batches(batch_size=65536):
            if b.num_rows:  # Spark may leave empty part files
                yield from pa.Table.from_batches([b]).select(target.names).cast(target).to_batches()

    return pa.RecordBatchReader.from_batches(target, batches())


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}"


def _norm_uri(u: str) -> str:
    """One spelling per file: ``file:/x``, ``file:///x`` and ``/x`` compare equal; percent-escapes decoded."""
    u = unquote(u)
    if u.startswith("file:"):
        u = "/" + u[len("file:"):].lstrip("/")
    return u


def _fs_path(uri: str) -> str:
    return _norm_uri(uri) if (not is_uri(uri) or uri.startswith("file:")) else uri.split(":", 1)[1].lstrip("/")


def _delete(path: str) -> None:
    fs, p = resolve_fs(path)
    try:
        fs.delete_file(p)
    except OSError:
        pass


def _writer_properties(ts: TableSpec | None):
    """delta-rs Parquet writer settings of a table: ``ts.row_group_rows`` rows per row group, when set.

    delta-rs otherwise writes ~100 MB files of one row group each, and a row group is the unit
    Spark splits scans by: a wide table (``item_embeddings``) would then scan in a few uneven tasks.
    """
    if ts is None or not ts.row_group_rows:
        return None
    from deltalake import WriterProperties

    return WriterProperties(max_row_group_size=ts.row_group_rows)


def table_properties(store: DeltaStore, name: str) -> dict:
    """Name, description (with primary key) and configuration recorded in the table's Delta metadata."""
    return store.properties(name)


__all__ = [
    "DeltaStore", "SparkDeltaStore", "DeltaRsStore", "ConcurrentWriteError", "WriteResult",
    "spark_has_delta", "spark_schema", "arrow_schema", "table_properties", "PAUSE_ENV",
]
