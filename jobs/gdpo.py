"""spark-submit entry point: ``lgsid gdpo``.

    spark-submit jobs/gdpo.py --conf conf/cluster.example.yaml [--set key=value ...]
"""

from lgsid.cli import job_main

if __name__ == "__main__":
    job_main("gdpo")
