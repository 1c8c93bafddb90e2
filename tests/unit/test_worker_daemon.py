"""lgsid.spark.worker_daemon: Spark's archives leave the Python workers' path only when pyspark is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lgsid.spark.session import worker_daemon_conf
from lgsid.spark.worker_daemon import is_spark_archive


def test_spark_archives_are_recognised():
    assert is_spark_archive("/opt/spark/python/lib/pyspark.zip")
    assert is_spark_archive("/opt/spark/python/lib/py4j-0.10.9.9-src.zip")
    assert is_spark_archive("/site-packages/pyspark/jars/spark-core_2.13-4.0.5.jar")
    assert not is_spark_archive("/usr/lib/python311.zip")
    assert not is_spark_archive("/work/app/deps.zip")
    assert not is_spark_archive("/site-packages")


@pytest.mark.parametrize("master", ["local", "local[1]", "local[2]", "local[*]", "local[4, 2]"])
def test_local_masters_run_the_lgsid_daemon(master):
    assert worker_daemon_conf(master) == {"spark.python.daemon.module": "lgsid.spark.worker_daemon"}


@pytest.mark.parametrize("master", ["spark://master:7077", "yarn", "k8s://https://api:6443", "local-cluster[2,1,1024]", "mesos://m:5050"])
def test_cluster_masters_keep_pysparks_daemon(master):
    assert worker_daemon_conf(master) == {}


def test_cluster_master_config_does_not_enable_it():
    """The shipped cluster config and a spark:// override both leave the daemon (and zipimport) alone."""
    from lgsid.config import load_config

    assert worker_daemon_conf(load_config("conf/cluster.example.yaml").spark.master) == {}
    assert worker_daemon_conf(load_config("conf/local.yaml", ["spark.master=spark://host:7077"]).spark.master) == {}
    assert worker_daemon_conf(load_config("conf/local.yaml").spark.master) != {}


def test_zipimport_patch_only_skips_spark_archives():
    out = _run(
        "import zipimport; orig = zipimport.zipimporter.invalidate_caches; "
        "from lgsid.spark.worker_daemon import keep_archive_directories; "
        "print(zipimport.zipimporter.invalidate_caches is orig, end=' '); keep_archive_directories(); "
        "print(zipimport.zipimporter.invalidate_caches is orig)"
    )
    assert out == "True False"  # importing the module patches nothing; only the daemon's __main__ calls it


def _run(code: str) -> str:
    return subprocess.check_output([sys.executable, "-c", code], text=True).strip()


def test_archives_dropped_when_pyspark_is_installed():
    out = _run(
        "import sys; sys.path[:0] = ['/x/lib/pyspark.zip', '/x/lib/py4j-0.1-src.zip', '/x/jars/spark-core.jar', '/x/deps.zip']; "
        "from lgsid.spark.worker_daemon import use_installed_pyspark; "
        "print(use_installed_pyspark(), [p for p in sys.path if p.startswith('/x/')])"
    )
    assert out == "True ['/x/deps.zip']"


def test_path_left_alone_when_pyspark_was_already_imported():
    out = _run(
        "import sys, pyspark; sys.path.insert(0, '/x/lib/pyspark.zip'); "
        "from lgsid.spark.worker_daemon import use_installed_pyspark; "
        "print(use_installed_pyspark(), '/x/lib/pyspark.zip' in sys.path)"
    )
    assert out == "False True"


@pytest.mark.spark
def test_local_session_workers_import_the_installed_pyspark(tmp_path):
    """A fresh local session (own process) runs a Python task through the daemon: no Spark archive on its path."""
    code = f"""
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from lgsid.config import load_config, replace
from lgsid.spark import get_spark
cfg = replace(load_config(None), spark={{"master": "local[1]", "petastorm_cache_dir": {str(tmp_path)!r}}})
spark = get_spark(cfg)
assert spark.conf.get("spark.python.daemon.module") == "lgsid.spark.worker_daemon"
def probe(it):
    import sys, pyspark
    from lgsid.spark.worker_daemon import is_spark_archive
    yield (pyspark.__file__, [p for p in sys.path if is_spark_archive(p)])
print(spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect())
spark.stop()
"""
    out = subprocess.check_output([sys.executable, "-c", code], text=True, stderr=subprocess.DEVNULL, timeout=300).strip().splitlines()[-1]
    assert "site-packages/pyspark/__init__.py" in out and out.endswith(", [])]")
