"""Delta tables with two backends behind one small API.

* ``spark``: native Delta through the session's delta-spark jars (any real cluster, or
  ``--packages io.delta:delta-spark_2.13:4.0.x``). Reads and writes use Spark's ``delta`` format;
  MERGE and history use delta-spark's Python API. Nothing is collected to the driver.
* ``deltars``: delta-rs (``deltalake``) on the driver, for the embedded default where the jars
  cannot be downloaded. A write stages the Spark DataFrame as Parquet (executors write in
  parallel), then streams the staged files as Arrow record batches into one delta-rs commit; a
  read hands the current snapshot's file list to ``spark.read.parquet``.

Both backends write the same Delta protocol, schema (from :mod:`lgsid.tables`), NOT NULL columns
and CHECK constraints, so a table written by one reads through the other. Every data write is one
commit: a failure before the commit leaves the previous version as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import pyarrow as pa
import pyarrow.dataset as pads

from lgsid.config import StorageConfig
from lgsid.errors import LGSIDError, TableNotFoundError, ValidationError
from lgsid.tables import TableSpec, spec as table_spec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)


def _is_uri(path: str) -> bool:
    return "://" in path


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


class DeltaStore:
    """Reads, writes and merges the catalogue's Delta tables under ``cfg.root``.

    Args:
        spark: The active SparkSession.
        cfg: Storage config; ``backend='auto'`` picks ``spark`` when the session has Delta's jars.
    """

    def __init__(self, spark: "SparkSession", cfg: StorageConfig):
        self.spark = spark
        self.cfg = cfg
        has = spark_has_delta(spark)
        if cfg.backend == "spark" and not has:
            raise LGSIDError(
                "storage.backend=spark but the Spark session has no Delta jars; start it with "
                "--packages io.delta:delta-spark_2.13:4.0.0 (and the Delta SQL extension) or set storage.backend=deltars"
            )
        self.backend = "spark" if (cfg.backend == "spark" or (cfg.backend == "auto" and has)) else "deltars"
        self.root = cfg.root if _is_uri(cfg.root) else os.path.abspath(cfg.root)
        self.staging = cfg.staging_dir if _is_uri(cfg.staging_dir) else os.path.abspath(cfg.staging_dir)

    # ------------------------------------------------------------------ paths & metadata
    def path(self, name: str) -> str:
        """Location of table ``name``."""
        return f"{self.root.rstrip('/')}/{name}"

    def _dt(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(self.path(name), version=version, storage_options=self.cfg.storage_options or None)

    def exists(self, name: str) -> bool:
        """Whether a Delta table exists at ``path(name)``."""
        from deltalake import DeltaTable

        if self.backend == "spark":
            from delta.tables import DeltaTable as SparkDeltaTable

            return SparkDeltaTable.isDeltaTable(self.spark, self.path(name))
        return DeltaTable.is_deltatable(self.path(name), storage_options=self.cfg.storage_options or None)

    def version(self, name: str) -> int | None:
        """Current version of ``name``, or ``None`` when it does not exist."""
        if not self.exists(name):
            return None
        if self.backend == "spark":
            return int(self.history(name, limit=1)[0]["version"])
        return int(self._dt(name).version())

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        """Commit history, newest first: dicts with at least ``version``, ``timestamp``, ``operation``."""
        self._require(name)
        if self.backend == "spark":
            from delta.tables import DeltaTable as SparkDeltaTable

            rows = SparkDeltaTable.forPath(self.spark, self.path(name)).history(limit or 1_000_000).collect()
            return [{"version": r["version"], "timestamp": r["timestamp"], "operation": r["operation"]} for r in rows]
        return list(self._dt(name).history(limit))

    def _require(self, name: str) -> None:
        if not self.exists(name):
            ts = table_spec(name) if name in _catalogue_names() else None
            hint = f" Run `lgsid {ts.written_by}` first." if ts and ts.written_by else ""
            raise TableNotFoundError(f"Delta table '{name}' not found at {self.path(name)}.{hint}")

    # ------------------------------------------------------------------ reads
    def read(self, name: str, version: int | None = None) -> "DataFrame":
        """Table ``name`` (optionally as of ``version``) as a Spark DataFrame."""
        self._require(name)
        if self.backend == "spark":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(self.path(name))
        dt = self._dt(name, version)
        files = dt.file_uris()
        schema = self._spark_schema_of(name, dt)
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    def _spark_schema_of(self, name: str, dt) -> "StructType":
        from pyspark.sql.pandas.types import from_arrow_schema

        if name in _catalogue_names():
            return spark_schema(table_spec(name))
        return from_arrow_schema(pa.schema(dt.schema().to_arrow()))

    def arrow_batches(self, name: str, columns: Sequence[str] | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Stream the current snapshot as Arrow record batches on the driver (embedded path).

        Reads the snapshot's Parquet files with pyarrow, so nothing larger than one batch is held.
        """
        self._require(name)
        if self.backend == "spark":
            df = self.read(name)
            if columns:
                df = df.select(*columns)
            for b in df.toArrow().to_batches(batch_size):  # cluster users should stay in Spark
                yield b
            return
        dt = self._dt(name)
        files = [f.replace("file://", "") for f in dt.file_uris()]
        if not files:
            return
        cols = list(columns) if columns else None
        # Files written on creation and by MERGE differ in nullability (and MERGE may use view
        # types), and files written before a column was added lack it, so every batch is cast to
        # one schema: the table's, with every field nullable (missing columns read as null).
        target = pa.schema([f.with_nullable(True) for f in self._arrow_schema_of(name, dt)])
        if cols:
            target = pa.schema([target.field(c) for c in cols])
        try:
            datasets = [pads.dataset([f], format="parquet") for f in files]
            batches = (b for ds in datasets
                       for b in ds.to_batches(columns=[c for c in target.names if c in ds.schema.names], batch_size=batch_size))
        except pa.ArrowInvalid as e:
            # delta-rs MERGE writes files whose embedded Arrow schema uses view types (Utf8View)
            # that pyarrow 14 cannot read; Spark's reader ignores that schema. Read file by file.
            if "Unrecognized type" not in str(e):
                raise
            batches = self._spark_file_batches(name, dt, files, cols, batch_size)
        for b in batches:
            if b.num_rows:
                t = pa.Table.from_batches([b])
                for f in target:
                    if f.name not in t.column_names:
                        t = t.append_column(f.name, pa.nulls(len(t), f.type))
                yield from t.select(target.names).cast(target).to_batches()

    def _arrow_schema_of(self, name: str, dt) -> pa.Schema:
        if name in _catalogue_names():
            return arrow_schema(table_spec(name))
        return pa.schema(dt.schema().to_arrow())

    def _spark_file_batches(self, name: str, dt, files: list[str], columns: list[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Fallback of :meth:`arrow_batches`: each Parquet file through Spark, one file in memory at a time."""
        schema = self._spark_schema_of(name, dt)
        for f in files:
            try:
                t = pads.dataset([f], format="parquet").to_table(columns=columns)
            except pa.ArrowInvalid:
                df = self.spark.read.schema(schema).parquet(f)
                t = (df.select(*columns) if columns else df).toArrow()
            yield from t.to_batches(batch_size)

    def to_pandas(self, name: str, columns: Sequence[str] | None = None):
        """The whole table as pandas. For small tables only (models, metrics, tests)."""
        import pandas as pd

        batches = list(self.arrow_batches(name, columns))
        if not batches:
            return self.read(name).select(*(columns or [])).limit(0).toPandas() if columns else self.read(name).limit(0).toPandas()
        return pa.Table.from_batches(batches).to_pandas()

    # ------------------------------------------------------------------ writes
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

    def write(self, df: "DataFrame", name: str, mode: str = "overwrite") -> WriteResult:
        """Write ``df`` as table ``name`` in one commit (``mode`` = overwrite | append).

        The DataFrame is conformed to the catalogue schema and NOT NULL columns are checked first;
        on any error nothing is committed and the previous version stays current.
        """
        ts = table_spec(name) if name in _catalogue_names() else None
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be 'overwrite' or 'append', got {mode!r}")
        if ts is not None:
            df = self.conform(df, ts)
            self._check_rows(df, ts)
        before = self.version(name)
        try:
            if self.backend == "spark":
                self._ensure_spark_table(ts, name, df)
                (
                    df.write.format("delta")
                    .mode(mode)
                    .option("overwriteSchema", "false")
                    .save(self.path(name))
                )
            else:
                # Stage first (the step that evaluates the DataFrame and may fail), then create the
                # table if needed and commit once: a failure leaves no new version, not even an empty table.
                with self._staged(df) as reader:
                    from deltalake import CommitProperties, write_deltalake

                    self._ensure_deltars_table(ts, name, df)
                    try:
                        write_deltalake(
                            self.path(name),
                            reader,
                            mode=mode,
                            storage_options=self.cfg.storage_options or None,
                            writer_properties=_writer_properties(ts),
                            commit_properties=CommitProperties(custom_metadata={"lgsid.table": name}),
                        )
                    except Exception as e:  # delta-rs raises its own DeltaError for CHECK violations
                        if "failed validation check" in str(e):
                            raise ValidationError(f"table '{name}': rows violate a CHECK constraint {ts.checks if ts else ''}: {e}") from None
                        raise
        except LGSIDError:
            raise
        except Exception as e:
            state = f"still at version {before}" if before is not None else "the table was not created"
            raise LGSIDError(f"writing Delta table '{name}' failed; nothing was committed ({state}): {type(e).__name__}: {e}") from e
        v = self.version(name)
        assert v is not None
        return WriteResult(name, v, self.count(name))

    def count(self, name: str) -> int:
        """Rows in the current snapshot (from Delta's file statistics on the deltars backend)."""
        if self.backend == "spark":
            return self.read(name).count()
        dt = self._dt(name)
        adds = dt.get_add_actions(flatten=True)
        try:
            return int(sum(pa.array(adds.column("num_records")).to_pylist() or [0]))
        except Exception:  # statistics missing: fall back to scanning
            return self.read(name).count()

    def merge(self, df: "DataFrame", name: str, keys: Sequence[str] | None = None) -> WriteResult:
        """Upsert ``df`` into ``name`` on ``keys`` (default: the table's primary key) in one commit.

        Matched rows are updated, unmatched source rows inserted, target rows absent from the
        source kept. Creates the table on first use. The source must be unique on ``keys``.
        """
        from pyspark.sql import functions as F

        ts = table_spec(name) if name in _catalogue_names() else None
        keys = list(keys or (ts.primary_key if ts else ()))
        if not keys:
            raise ValueError(f"merge into '{name}' needs keys")
        if ts is not None:
            df = self.conform(df, ts)
            self._check_rows(df, ts)
        dup = df.groupBy(*keys).count().where(F.col("count") > 1).limit(3).collect()
        if dup:
            raise ValidationError(f"merge into '{name}': source has duplicate keys {keys}: {[r.asDict() for r in dup]}")
        if not self.exists(name):
            return self.write(df, name, mode="overwrite")
        self.add_missing_columns(name)
        pred = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        if self.backend == "spark":
            from delta.tables import DeltaTable as SparkDeltaTable

            (
                SparkDeltaTable.forPath(self.spark, self.path(name)).alias("t")
                .merge(df.alias("s"), pred)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        else:
            with self._staged(df) as reader:
                (
                    self._dt(name)
                    .merge(source=reader, predicate=pred, source_alias="s", target_alias="t", writer_properties=_writer_properties(ts))
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute()
                )
        v = self.version(name)
        assert v is not None
        return WriteResult(name, v, self.count(name))

    # ------------------------------------------------------------------ table creation
    def stored_columns(self, name: str) -> list[str]:
        """Column names in the stored table's Delta schema (may lack catalogue columns added since it was written)."""
        self._require(name)
        if self.backend == "spark":
            return list(self.spark.read.format("delta").load(self.path(name)).columns)
        return [f.name for f in self._dt(name).schema().fields]

    def add_missing_columns(self, name: str) -> list[str]:
        """Append the catalogue columns the stored table lacks (one metadata commit; no data rewritten).

        Tables written by an older lgsid (e.g. ``item_embeddings`` before ``embedding_f32``) get the
        new columns as nullable (Delta cannot add a NOT NULL column to a table that has rows); their
        old rows read as null there until rewritten, and every new write is still checked against
        the catalogue's NOT NULL list. New catalogue columns go last in the schema, so the order
        matches. Returns the added column names (empty when none were missing).
        """
        if name not in _catalogue_names() or not self.exists(name):
            return []
        ts = table_spec(name)
        have = set(self.stored_columns(name))
        missing = [f for f in arrow_schema(ts) if f.name not in have]
        if not missing:
            return []
        if self.backend == "spark":
            types = {f.name: f.dataType.simpleString() for f in spark_schema(ts).fields}
            cols = ", ".join(f"`{f.name}` {types[f.name]}" for f in missing)
            self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` ADD COLUMNS ({cols})")
        else:
            from deltalake import Schema

            fields = Schema.from_arrow(pa.schema([f.with_nullable(True) for f in missing])).fields
            self._dt(name).alter.add_columns(fields)
        added = [f.name for f in missing]
        log.warning("table '%s' predates column(s) %s: added them (nullable; existing rows hold null)", name, added)
        return added

    def _ensure_deltars_table(self, ts: TableSpec | None, name: str, df: "DataFrame") -> None:
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

    def _ensure_spark_table(self, ts: TableSpec | None, name: str, df: "DataFrame") -> None:
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

    # ------------------------------------------------------------------ staging
    class _Staged:
        def __init__(self, store: "DeltaStore", df: "DataFrame"):
            self.store, self.df = store, df
            self.dir = f"{store.staging.rstrip('/')}/{uuid.uuid4().hex}"

        def __enter__(self) -> pa.RecordBatchReader:
            from pyspark.sql.pandas.types import to_arrow_schema

            try:
                self.df.write.mode("overwrite").parquet(self.dir)
            except BaseException:  # __exit__ is not called when __enter__ raises
                self.__exit__()
                raise
            target = to_arrow_schema(self.df.schema)
            ds = pads.dataset(self.dir, format="parquet")

            def batches() -> Iterator[pa.RecordBatch]:
                for b in ds.to_batches(batch_size=65536):
                    if b.num_rows:  # Spark may leave empty part files
                        yield from pa.Table.from_batches([b]).select(target.names).cast(target).to_batches()

            return pa.RecordBatchReader.from_batches(target, batches())

        def __exit__(self, *exc) -> None:
            if not _is_uri(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)

    def _staged(self, df: "DataFrame") -> "DeltaStore._Staged":
        return DeltaStore._Staged(self, df)


def _writer_properties(ts: TableSpec | None):
    """delta-rs Parquet writer settings of a table: ``ts.row_group_rows`` rows per row group, when set.

    delta-rs otherwise writes ~100 MB files of one row group each, and a row group is the unit
    Spark splits scans by: a wide table (``item_embeddings``) would then scan in a few uneven tasks.
    """
    if ts is None or not ts.row_group_rows:
        return None
    from deltalake import WriterProperties

    return WriterProperties(max_row_group_size=ts.row_group_rows)


def _catalogue_names() -> set[str]:
    from lgsid.tables import CATALOGUE

    return set(CATALOGUE)


def table_properties(store: DeltaStore, name: str) -> dict:
    """Name, description (with primary key) and constraints recorded in the table's Delta metadata."""
    if store.backend == "spark":
        row = store.spark.sql(f"DESCRIBE DETAIL delta.`{store.path(name)}`").collect()[0]
        return {"name": row["name"], "description": row["description"], "properties": dict(row["properties"])}
    md = store._dt(name).metadata()
    return {"name": md.name, "description": md.description, "properties": dict(md.configuration)}


__all__ = ["DeltaStore", "WriteResult", "spark_has_delta", "spark_schema", "arrow_schema", "table_properties"]
