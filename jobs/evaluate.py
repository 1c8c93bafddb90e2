"""spark-submit entry point: ``lgsid evaluate``.

    spark-submit jobs/evaluate.py --conf conf/cluster.example.yaml [--set key=value ...]
"""

from lgsid.cli import job_main

if __name__ == "__main__":
    job_main("evaluate")
