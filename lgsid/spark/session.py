"""The SparkSession: the active one under spark-submit, else an embedded local session."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from lgsid.config import LGSIDConfig
from lgsid.errors import EnvironmentSetupError
from lgsid.fs import to_uri


def require_java() -> str:
    """Return the ``java`` executable Spark will use, or raise a clear error when there is none.

    Raises:
        EnvironmentSetupError: no Java on PATH / JAVA_HOME, or it is not runnable.
    """
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise EnvironmentSetupError(
            "Java not found: Spark needs Java 17 (set JAVA_HOME or put `java` on PATH; "
            "e.g. `apt-get install openjdk-17-jre-headless`)."
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnvironmentSetupError(f"Java at {java} does not run: {e}") from None
    return java


LOCAL_MASTER = re.compile(r"local(\[(\d+|\*)(,\s*\d+)?\])?")


def worker_daemon_conf(master: str) -> dict[str, str]:
    """Spark conf that runs Python workers through :mod:`lgsid.spark.worker_daemon`, for ``local`` masters only.

    ``local``, ``local[N]``, ``local[*]`` and ``local[N, F]`` get it: their workers run on this
    machine, beside the driver's installed pyspark. Any other master (``spark://``, ``yarn``,
    ``k8s://``, ``local-cluster[...]``) gets ``{}``: executors there keep pyspark's own daemon and
    their ``zipimport`` untouched.
    """
    if LOCAL_MASTER.fullmatch(master.strip()):
        return {"spark.python.daemon.module": "lgsid.spark.worker_daemon"}
    return {}


def get_spark(cfg: LGSIDConfig):
    """The active SparkSession if there is one (a notebook), else a new one.

    Under spark-submit the new session keeps the submit's master and driver settings and only adds
    the SQL settings below.

    The embedded session uses ``cfg.spark``: master, shuffle partitions, driver memory, the Petastorm
    cache directory conf that ``make_spark_converter`` needs, UTC timestamps written as
    TIMESTAMP_MICROS (what Delta stores), and any extra ``spark.conf`` entries. In local mode its
    Python workers run :mod:`lgsid.spark.worker_daemon` (pyspark's daemon without Spark's zips and
    jar on ``sys.path``, which cost ~0.3 s of Python CPU per UDF task otherwise).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    cache = cfg.spark.petastorm_cache_dir
    cache_url = to_uri(cache)
    if active is not None:
        if not active.conf.get("petastorm.spark.converter.parentCacheDirUrl", None):
            active.conf.set("petastorm.spark.converter.parentCacheDirUrl", cache_url)
        return active
    # Under spark-submit the JVM already runs with the submit's --master / --driver-memory / --conf;
    # the builder must not override them with the embedded session's settings.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if submitted:
        from pyspark import SparkConf

        master = SparkConf().get("spark.master", "local[*]")
        builder = SparkSession.builder
    else:
        require_java()
        # Python workers must run the driver's interpreter (the venv with pandas, torch, lgsid), not
        # whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        master = cfg.spark.master
        builder = SparkSession.builder.master(master).config("spark.driver.memory", cfg.spark.driver_memory)
    builder = (
        builder.appName(cfg.spark.app_name)
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")  # from SparkContext start on (spark-submit's JVM logs INFO before)
        .config("petastorm.spark.converter.parentCacheDirUrl", cache_url)
    )
    for k, v in worker_daemon_conf(master).items():  # local masters only
        builder = builder.config(k, v)
    for k, v in (cfg.spark.conf or {}).items():
        builder = builder.config(k, str(v))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    key = "spark.sql.autoBroadcastJoinThreshold"
    if key not in (cfg.spark.conf or {}) and not spark.sparkContext.getConf().contains(key):  # an explicit setting wins
        from lgsid.spark.joins import auto_broadcast_threshold, driver_memory_bytes

        spark.conf.set(key, str(auto_broadcast_threshold(driver_memory_bytes(spark))))
    return spark
