"""Python worker daemon of embedded Spark sessions: ``pyspark.daemon`` without Spark's archives on ``sys.path``.

Spark puts ``pyspark.zip``, ``py4j-*-src.zip`` and the ``spark-core`` jar first on every Python
worker's path. With a pip-installed pyspark they only duplicate the installed packages (the jar
holds no Python at all), and they are expensive: before each task the worker calls
``importlib.invalidate_caches()``, which makes Python 3.11 re-read the central directory of every
archive on the path (~6,500 entries) and makes ``importlib.metadata`` scan them again on its next
lookup (MLflow's ``load_model`` checks the installed versions in every ``spark_udf`` task).
Profiled on the SID write-back: ~0.3 s of Python CPU per task, about what the tokenizer itself
spends on a 33k-row task.

This module drops those archives from ``sys.path`` (and their cached importers) when pyspark and
py4j import from the installed packages without them, else it leaves the path alone; makes
``invalidate_caches`` a no-op for importers of Spark's archives that survive (a namespace package
such as ``org`` can keep one; the archives do not change while a worker lives); then runs
``pyspark.daemon``. :func:`lgsid.spark.get_spark` selects it (``spark.python.daemon.module``) for
the local-mode sessions it creates (``local``/``local[N]``/``local[*]`` masters only; never a cluster
master, see :func:`lgsid.spark.session.worker_daemon_conf`).

Measured with ``bench/worker_daemon.py --sizes 3000 --repeats 4 --queries 5`` (the demo's 3,000
items in 2 tasks, local[2], 2 shared cores): an MLflow ``spark_udf`` query takes 0.94 s median
(0.40 s best) with this daemon vs 1.55 s (0.97 s) with ``pyspark.daemon``; a trivial ``pandas_udf``
0.68 s vs 0.98 s.
"""

from __future__ import annotations

import os
import sys


def is_spark_archive(entry: str) -> bool:
    """A ``sys.path`` entry Spark adds for workers: ``pyspark.zip``, ``py4j-*-src.zip`` or a ``.jar``."""
    name = os.path.basename(entry)
    return name == "pyspark.zip" or (name.startswith("py4j-") and name.endswith("-src.zip")) or name.endswith(".jar")


def use_installed_pyspark() -> bool:
    """Drop Spark's archives from ``sys.path`` if pyspark and py4j are installed; returns whether it did."""
    import importlib.util

    if "pyspark" in sys.modules:  # already imported from somewhere: leave it be
        return False
    archives = [p for p in sys.path if is_spark_archive(p)]
    if not archives:
        return False
    original = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in archives]
    for key in [k for k in sys.path_importer_cache if any(k == a or k.startswith(a + os.sep) for a in archives)]:
        del sys.path_importer_cache[key]
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("py4j") is None:
        sys.path[:] = original  # no installed copy: the archives are the only pyspark
        return False
    return True


def keep_archive_directories() -> None:
    """Make ``zipimporter.invalidate_caches`` skip Spark's archives (it re-reads their whole directory)."""
    import zipimport

    original = zipimport.zipimporter.invalidate_caches
    if getattr(original, "_lgsid", False):
        return

    def invalidate_caches(self) -> None:
        if not is_spark_archive(self.archive):
            original(self)

    invalidate_caches._lgsid = True  # type: ignore[attr-defined]
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


if __name__ == "__main__":
    use_installed_pyspark()
    keep_archive_directories()
    from pyspark.daemon import manager

    manager()
