"""Benchmark: where one step's driver-side Python peaks in memory.

    python bench/step_memory.py gdpo --conf conf/local.yaml --set storage.root=... [more --set]
    python bench/step_memory.py tokenize --conf conf/local.yaml

Runs ``lgsid <step> <args>`` in this process (its JVM and executors are separate processes and not
counted) while a thread samples the process's RSS every ``--interval`` seconds together with the
main thread's innermost ``lgsid`` frames. Prints the RSS trajectory (a line whenever RSS moved by
``--step-mb``) and the highest samples with where they were taken. Use it on the tables of an earlier
run, and change a config value of the step (e.g. ``--set gdpo.coverage_k=11``) when the step would
otherwise reuse a registered model. ``bench/pipeline_scale.py --data-plane`` gives the driver's total
(Python + JVM) per step; this tells which code inside a step holds the Python part. JSON last line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frames_of(frame, depth: int = 4) -> list[str]:
    """The innermost ``depth`` frames of ``frame``'s stack that belong to lgsid, as ``file:line:function``."""
    if frame is None:
        return []
    stack = [f for f in traceback.extract_stack(frame) if f"{os.sep}lgsid{os.sep}" in f.filename]
    return [f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in stack[-depth:]]


def summarise(samples: list[tuple[float, int, list[str]]], step_mb: int = 30, top: int = 5) -> dict:
    """``(seconds, rss bytes, frames)`` samples -> the trajectory (a sample whenever RSS moved by ``step_mb``), the ``top`` highest samples, the peak."""
    traj, last = [], None
    for t, rss, where in samples:
        mb = rss >> 20
        if last is None or abs(mb - last) >= step_mb:
            traj.append({"s": round(t, 1), "rss_mb": mb, "at": " > ".join(where)})
            last = mb
    best = sorted(samples, key=lambda s: -s[1])[:top]
    return {"peak_rss_mb": (best[0][1] >> 20) if best else 0,
            "top": [{"s": round(t, 1), "rss_mb": rss >> 20, "at": " > ".join(w)} for t, rss, w in best], "trajectory": traj}


def main(argv: list[str] | None = None) -> int:
    import argparse

    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Everything after the step is passed to `lgsid <step>`.")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between samples (default 0.1)")
    ap.add_argument("--step-mb", type=int, default=30, help="trajectory resolution in MB (default 30)")
    ap.add_argument("step")
    args, rest = ap.parse_known_args(argv)

    proc, main_id = psutil.Process(), threading.main_thread().ident
    samples: list[tuple[float, int, list[str]]] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - t0, proc.memory_info().rss, frames_of(sys._current_frames().get(main_id))))
            done.wait(args.interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    from lgsid.cli import main as lgsid_main

    try:
        rc = lgsid_main([args.step, *rest])
    finally:
        done.set()
        th.join()
    out = summarise(samples, args.step_mb)
    for row in out["trajectory"]:
        print(f"{row['s']:8.1f} s {row['rss_mb']:6d} MB  {row['at']}")
    print("highest:")
    for row in out["top"]:
        print(f"{row['s']:8.1f} s {row['rss_mb']:6d} MB  {row['at']}")
    print(json.dumps({"step": args.step, "rc": rc, "peak_rss_mb": out["peak_rss_mb"], "peak_at": out["top"][0]["at"] if out["top"] else ""}))
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
