"""A tqdm bar over the tasks of the Spark jobs that run inside a ``with`` block.

Steps whose heavy work is one Spark action (a ``mapInPandas`` over anchor partitions, say) have no
Python loop to wrap in tqdm; this polls Spark's status tracker from a thread instead and shows
completed / total tasks of the stages started inside the block.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def spark_progress(spark, desc: str, enabled: bool = True, interval_s: float = 0.5) -> Iterator[None]:
    """Show a tqdm bar of Spark task progress while the block runs.

    Args:
        spark: The SparkSession.
        desc: Bar label.
        enabled: False turns the bar off (the block still runs).
        interval_s: Polling period.
    """
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getActiveStageIds())
    seen: dict[int, tuple[int, int]] = {}  # stage -> (completed, total)
    stop = threading.Event()
    bar = tqdm(total=0, desc=desc, unit="task")

    def poll() -> None:
        while True:
            for sid in tracker.getActiveStageIds():
                if sid in before:
                    continue
                info = tracker.getStageInfo(sid)
                if info is not None:
                    seen[sid] = (info.numCompletedTasks, info.numTasks)
            done, total = sum(c for c, _ in seen.values()), sum(t for _, t in seen.values())
            if total != bar.total:
                bar.total = total
            bar.n = done
            bar.refresh()
            if stop.wait(interval_s):
                return

    th = threading.Thread(target=poll, name="spark-progress", daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        for sid in list(seen):  # stages that finished between polls
            info = tracker.getStageInfo(sid)
            if info is not None:
                seen[sid] = (info.numCompletedTasks, info.numTasks)
        bar.total = sum(t for _, t in seen.values())
        bar.n = sum(c for c, _ in seen.values())
        bar.close()
