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
  The executors write the table's Parquet data files straight into the table directory
  (:func:`write_data_files`, one Spark task per partition) and return one small row per file (path,
  size, Delta statistics); the driver commits those files as add actions in one delta-rs transaction,
  so no row passes through the driver. A read hands the snapshot's file list to ``spark.read.parquet``.
  MERGE is computed in Spark and committed the same way, as remove actions of the files it rewrites
  plus add actions of the new files (:meth:`DeltaRsStore._commit_merge`), because delta-rs' own MERGE
  writes Parquet whose embedded Arrow schema uses view types (``Utf8View``) that pyarrow 14 cannot read.

Both backends write the same Delta protocol, schema, NOT NULL columns and CHECK constraints, so a
table written by one reads through the other, and every file is readable by Spark, by
``deltalake.DeltaTable(...).to_pandas()`` and by ``pyarrow.dataset``. Every data write is one commit:
a failure before the commit leaves the previous version as it was (on the deltars backend the files
the failed write produced are deleted; files no commit adds are never seen by a reader anyway), and a
commit that finds the table changed since it was read fails with :class:`ConcurrentWriteError`
instead of overwriting the other writer's rows.
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
    """delta-rs on the driver (``storage.backend=deltars``, the embedded default); Spark computes and writes the data files."""

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
        """Commit ``df`` (already conformed and checked) to ``name`` in one Delta commit (``overwrite`` or ``append``).

        The executors write the data files straight into the table directory (:meth:`_write_files`);
        the driver commits their add actions (an overwrite also removes every current file) in one
        transaction pinned to the version read before the files were written. A new table is created
        only once its files are written, so a DataFrame that fails to evaluate creates nothing.
        """
        from deltalake import DeltaTable

        dt: DeltaTable | None = None
        if self.exists(name):
            self.add_missing_columns(name)
            dt = self._dt(name)
            schema = self._arrow_schema_of(name, dt)
        else:
            from pyspark.sql.pandas.types import to_arrow_schema

            schema = arrow_schema(ts) if ts is not None else to_arrow_schema(df.schema)
        write_id, files = self._write_files(df, name, ts, schema)
        try:
            if dt is None:
                self._ensure_table(ts, name, df)
                dt = self._dt(name)
        except BaseException:
            _delete_write_files(self.path(name), write_id)
            raise
        read_version = dt.version()
        self._commit_files(
            dt, name, write_id, files, removes=[], mode=mode,
            # as the Spark backend: an overwrite of a catalogue table takes the catalogue's schema
            schema=arrow_schema(ts) if mode == "overwrite" and ts is not None else dt.schema(),
            metadata={"lgsid.table": name},
            conflict=lambda now_v: (
                f"write to '{name}' conflicts with a concurrent commit: read version {read_version}, the table is now at "
                f"version {now_v}; nothing was committed by this run (rerun the step)"
            ),
        )

    def _commit_merge(self, df: "DataFrame", name: str, ts: TableSpec | None, keys: list[str]) -> None:
        """MERGE as copy-on-write in one commit: remove the files holding a source key, add their rewrite.

        The rewrite of a touched file keeps its rows whose key is not in the source; the new files
        (written by the executors, :meth:`_write_files`) hold those rows plus every source row
        (updates and inserts). Files without a source key stay. The source is staged once, because
        it is read twice (its keys, then its rows). The commit is pinned to the version read (no
        retries), so a concurrent commit makes this one fail with :class:`ConcurrentWriteError`
        rather than drop the other writer's rows.
        """
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
            write_id, files = self._write_files(new, name, ts, self._arrow_schema_of(name, dt))
        now = int(time.time() * 1000)
        self._commit_files(
            dt, name, write_id, files, removes=[RemoveAction(a["path"], True, now, a["size_bytes"]) for a in touched],
            mode="append", schema=dt.schema(),
            metadata={"lgsid.table": name, "lgsid.operation": "MERGE", "lgsid.merge_keys": ",".join(keys),
                      "lgsid.files_rewritten": len(touched), "readVersion": read_version},
            conflict=lambda now_v: (
                f"merge into '{name}' conflicts with a concurrent commit: read version {read_version}, the table is now at "
                f"version {now_v}; nothing was committed by this run (rerun the step to merge into the new version)"
            ),
        )

    def _write_files(self, df: "DataFrame", name: str, ts: TableSpec | None, schema: pa.Schema) -> tuple[str, list[dict]]:
        """The executors write ``df`` as new data files of table ``name``; nothing is committed.

        Each Spark task writes its partition with :func:`write_data_files` into the table directory,
        in files named for this write (``part-<write id>-…``), and returns one small row per file.
        Only the rows of successful task attempts reach the driver. When the Spark job fails, every
        file of this write (failed attempts included) is deleted before the error is raised.

        Args:
            df: The rows to write (already conformed and checked).
            name: Table name.
            ts: Its catalogue spec (``ts.row_group_rows`` sets the row-group size), or None.
            schema: The table's Arrow schema; files store it with every field nullable.

        Returns:
            ``(write id, files)``: one dict per file with ``path`` (relative to the table), ``size``
            (bytes), ``rows`` and ``stats`` (Delta stats JSON, see :class:`FileStats`).
        """
        import functools

        write_id = uuid.uuid4().hex
        task = functools.partial(
            _write_partition, table_uri=self.path(name), schema=schema, write_id=write_id,
            row_group_rows=ts.row_group_rows if ts is not None else None,
        )
        try:
            rows = df.mapInArrow(task, WRITTEN_FILE_SCHEMA).collect()
        except BaseException:
            _delete_write_files(self.path(name), write_id)
            raise
        return write_id, [r.asDict() for r in rows]

    def _commit_files(self, dt, name: str, write_id: str, files: list[dict], removes: list, mode: str, schema,
                      metadata: dict, conflict) -> None:
        """Commit add actions for ``files`` (and ``removes``) in one transaction pinned to ``dt``'s version.

        ``mode='overwrite'`` lets delta-rs remove every file of ``dt``'s snapshot. On any failure the
        write's files are deleted and nothing is committed; a commit that finds a newer version raises
        :class:`ConcurrentWriteError` with ``conflict(current version)``. Files of this write that
        are not committed (from failed or speculative task attempts) are deleted after the commit.
        """
        from deltalake import CommitProperties
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction

        read_version = dt.version()
        now = int(time.time() * 1000)
        actions = list(removes) + [AddAction(f["path"], f["size"], {}, now, True, f["stats"]) for f in files]
        keep: set[str] | None = set()  # None: unknown whether the commit landed, so delete nothing
        try:
            _pause_at_commit(name)
            dt.create_write_transaction(
                actions, mode=mode, schema=schema,
                commit_properties=CommitProperties(custom_metadata={**metadata, "lgsid.write_id": write_id}, max_commit_retries=0),
            )
            keep = {f["path"] for f in files}
        except BaseException as e:
            landed = self._landed(name, read_version, write_id)
            if landed:  # the commit is in the log; what failed came after it (a post-commit hook)
                keep = {f["path"] for f in files}
                log.warning("table '%s': the commit landed but a step after it failed: %s", name, e)
                return
            keep = None if landed is None else set()
            if isinstance(e, CommitFailedError):
                raise ConcurrentWriteError(conflict(self.version(name))) from None
            raise
        finally:
            if keep is not None:
                _delete_write_files(self.path(name), write_id, keep)

    def _landed(self, name: str, read_version: int, write_id: str) -> bool | None:
        """Whether a commit after ``read_version`` carries ``write_id`` (None when the log cannot be read)."""
        try:
            now_v = self.version(name)
            if now_v is None or now_v <= read_version:
                return False
            return any(h.get("lgsid.write_id") == write_id for h in self._dt(name).history(now_v - read_version))
        except Exception:
            return None

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


WRITTEN_FILE_SCHEMA = "path string, size bigint, rows bigint, stats string"
"""Spark schema of the rows the write tasks return: one per data file (see :func:`write_data_files`)."""

ROW_GROUP_BYTES = 128 << 20
"""Row-group target (bytes of Arrow data) of a table without ``row_group_rows``; at most 1,048,576 rows."""


class FileStats:
    """Delta statistics of one data file, folded over the Arrow tables written to it.

    ``numRecords``, ``nullCount`` per top-level non-struct column, and exact ``minValues`` /
    ``maxValues`` of string and integer columns (what readers use to skip files on key lookups).

    Args:
        schema: The file's Arrow schema.
    """

    def __init__(self, schema: pa.Schema):
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema if not pa.types.is_struct(f.type)}
        self.ranged = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_integer(f.type)]
        self.lo: dict = {}
        self.hi: dict = {}

    def add(self, t: pa.Table) -> None:
        """Fold the rows of ``t`` (the file's schema) into the statistics."""
        import pyarrow.compute as pc

        self.rows += t.num_rows
        for c in self.nulls:
            self.nulls[c] += t.column(c).null_count
        for c in self.ranged:
            mm = pc.min_max(t.column(c)).as_py()
            if mm["min"] is not None:
                self.lo[c] = mm["min"] if c not in self.lo else min(self.lo[c], mm["min"])
                self.hi[c] = mm["max"] if c not in self.hi else max(self.hi[c], mm["max"])

    def to_json(self) -> str:
        """The Delta ``stats`` string of an add action."""
        return json.dumps({"numRecords": self.rows, "nullCount": self.nulls, "minValues": self.lo, "maxValues": self.hi}, default=str)


def write_data_files(batches: Iterator[pa.RecordBatch], table_uri: str, schema: pa.Schema, write_id: str,
                     row_group_rows: int | None = None, max_rows_per_file: int = 1_000_000, tag: str = "") -> Iterator[dict]:
    """Write record batches as Parquet data files of the Delta table at ``table_uri``; nothing is committed.

    Runs in a Spark task (:func:`_write_partition`) or anywhere else. Files are named
    ``part-<write_id>-<tag><random>-lgsid.snappy.parquet`` in the table directory, store
    ``schema`` with every field nullable (plain Arrow types, no views), are snappy-compressed, and
    hold row groups of exactly ``row_group_rows`` rows (the last one of a file may be shorter); a
    file is closed after the row group that takes it to ``max_rows_per_file`` rows. When this
    function fails, the files it wrote are deleted.

    Args:
        batches: The rows, in any column order, castable to ``schema``.
        table_uri: The table's location (a local path or a URI, opened with :func:`lgsid.fs.resolve`).
        schema: The table's Arrow schema.
        write_id: Names the files of one write, so that they can be found and deleted together.
        row_group_rows: Rows per row group; None sizes row groups to about
            :data:`ROW_GROUP_BYTES` (at most 1,048,576 rows).
        max_rows_per_file: Rows after which a file is closed and the next one opened.
        tag: Put in the file names after the write id (the Spark task writes its partition and attempt).

    Yields:
        One dict per file: ``path`` (relative to the table), ``size`` (bytes), ``rows``, ``stats``
        (:meth:`FileStats.to_json`).
    """
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    file_schema = pa.schema([f.with_nullable(True) for f in schema])
    fs, table_dir = resolve_fs(table_uri)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(table_dir, recursive=True)  # a new table's directory; object stores have none
    rg = row_group_rows
    written: list[str] = []
    cur: dict = {}  # the open file: rel, sink, writer, stats

    def write_group(t: pa.Table) -> None:
        if not cur:
            rel = f"part-{write_id}-{tag}{uuid.uuid4().hex[:16]}-lgsid.snappy.parquet"
            written.append(rel)
            sink = fs.open_output_stream(f"{table_dir}/{rel}")
            cur.update(rel=rel, sink=sink, writer=pq.ParquetWriter(sink, file_schema, compression="snappy"), stats=FileStats(file_schema))
        cur["writer"].write_table(t, row_group_size=t.num_rows)
        cur["stats"].add(t)

    def close() -> dict:
        cur["writer"].close()
        cur["sink"].close()
        size = fs.get_file_info(f"{table_dir}/{cur['rel']}").size
        out = {"path": cur["rel"], "size": int(size), "rows": cur["stats"].rows, "stats": cur["stats"].to_json()}
        cur.clear()
        return out

    pending: list[pa.Table] = []
    n_pending = 0
    try:
        for b in batches:
            if not b.num_rows:
                continue
            t = pa.Table.from_batches([b]).select(file_schema.names).cast(file_schema)
            if rg is None:  # size row groups by bytes, from the first batch's width
                rg = max(1, min(1 << 20, ROW_GROUP_BYTES * t.num_rows // max(1, t.nbytes)))
            pending.append(t)
            n_pending += t.num_rows
            while n_pending >= rg:
                rows = pa.concat_tables(pending)
                write_group(rows.slice(0, rg))
                rest = rows.slice(rg)
                pending, n_pending = ([rest] if rest.num_rows else []), rest.num_rows
                if cur["stats"].rows >= max_rows_per_file:
                    yield close()
        if n_pending:
            write_group(pa.concat_tables(pending))
        if cur:
            yield close()
    except BaseException:
        if cur:
            for k in ("writer", "sink"):
                try:
                    cur[k].close()
                except Exception:
                    pass
        for rel in written:
            _delete(f"{table_dir}/{rel}", fs)
        raise


def _write_partition(batches: Iterator[pa.RecordBatch], table_uri: str, schema: pa.Schema, write_id: str,
                     row_group_rows: int | None) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: one Spark task writes its partition (:func:`write_data_files`); one row per file."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    tag = f"p{ctx.partitionId():05d}-a{ctx.attemptNumber()}-" if ctx is not None else ""
    out = pa.schema([("path", pa.string()), ("size", pa.int64()), ("rows", pa.int64()), ("stats", pa.string())])
    for f in write_data_files(batches, table_uri, schema, write_id, row_group_rows, tag=tag):
        yield pa.RecordBatch.from_pylist([f], schema=out)


def _delete_write_files(table_uri: str, write_id: str, keep: set[str] | frozenset = frozenset()) -> int:
    """Delete the data files of write ``write_id`` in the table directory, except ``keep`` (relative paths).

    Removes what failed, retried or speculative task attempts left. Returns how many were deleted.
    """
    from pyarrow import fs as pafs

    fs, table_dir = resolve_fs(table_uri)
    prefix = f"part-{write_id}-"
    try:
        infos = fs.get_file_info(pafs.FileSelector(table_dir, allow_not_found=True))
    except OSError:
        return 0
    gone = [i.path for i in infos if i.base_name.startswith(prefix) and i.base_name not in keep]
    for p in gone:
        _delete(p, fs)
    if gone:
        log.info("deleted %d uncommitted data file(s) of write %s under %s", len(gone), write_id, table_uri)
    return len(gone)


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


def _delete(path: str, fs=None) -> None:
    """Delete one file (``path`` inside ``fs``, or a local path / URI when ``fs`` is None); a missing file is fine."""
    fs, p = (fs, path) if fs is not None else resolve_fs(path)
    try:
        fs.delete_file(p)
    except OSError:
        pass


def table_properties(store: DeltaStore, name: str) -> dict:
    """Name, description (with primary key) and configuration recorded in the table's Delta metadata."""
    return store.properties(name)


__all__ = [
    "DeltaStore", "SparkDeltaStore", "DeltaRsStore", "ConcurrentWriteError", "WriteResult",
    "spark_has_delta", "spark_schema", "arrow_schema", "table_properties", "PAUSE_ENV",
    "FileStats", "write_data_files",
]
