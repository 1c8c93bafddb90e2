"""spark-submit entry point: ``lgsid pairs``.

    spark-submit jobs/pairs.py --conf conf/cluster.example.yaml [--set key=value ...]
"""

from lgsid.cli import job_main

if __name__ == "__main__":
    job_main("pairs")
