"""Storage layer: the only place that knows how Delta tables are read, written and merged."""

from lgsid.storage.delta import (
    ConcurrentWriteError,
    DeltaRsStore,
    DeltaStore,
    SparkDeltaStore,
    WriteResult,
    arrow_schema,
    spark_has_delta,
    spark_schema,
    table_properties,
)

__all__ = [
    "ConcurrentWriteError", "DeltaRsStore", "DeltaStore", "SparkDeltaStore", "WriteResult",
    "arrow_schema", "spark_has_delta", "spark_schema", "table_properties",
]
