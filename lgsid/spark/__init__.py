"""Spark plumbing: session creation and helpers shared by the jobs."""

from lgsid.spark.session import get_spark, require_java

__all__ = ["get_spark", "require_java"]
