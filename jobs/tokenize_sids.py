"""spark-submit entry point: ``lgsid tokenize``.

    spark-submit jobs/tokenize_sids.py --conf conf/cluster.example.yaml [--set key=value ...]
"""

from lgsid.cli import job_main

if __name__ == "__main__":
    job_main("tokenize")
