"""Run the evaluation's independent model fits (tokenizer refits, model × seed trainings) in worker processes.

Each job is a pure function of its arguments and the section's shared arrays: it seeds its own
torch and NumPy generators, so its result does not depend on which process runs it or in which
order. With the same ``torch_threads`` the results of ``workers=1`` (in-process, sequential) and
``workers=N`` are identical.

Why processes and one thread each: the downstream models are small (d_model 64, 1 layer), so
intra-op threading splits tiny kernels and every op ends in a barrier; on a loaded machine a
descheduled OpenMP thread stalls every barrier (measured in ``docs/scale.md``: one TIGER step
5x slower at 2 threads than at 1 under load ~10). Independent fits in separate processes use
the cores without any barrier.

Where they run (``evaluate.fit_on``): in worker processes spawned on the driver's host (``local``), or
as one-task Spark jobs on the executors (``executors``), the default on a cluster master (``auto``).
On a cluster the driver host then carries only the evaluation's bounded inputs and its JVM; the
fits' memory (model, optimiser, beam search) is the executors'. The shared arrays travel once per
fit round as one pickle file distributed with ``SparkContext.addFile`` (streamed from disk by the
driver's file server, not through its heap) and are loaded once per reused Python worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence

_SHARED: Any = None
_LOADED: dict[str, Any] = {}  # an executor worker's shared arrays, by distributed file name

FIT_ON = ("auto", "local", "executors")


def fits_on_executors(fit_on: str, master: str) -> bool:
    """Whether ``evaluate.fit_on`` sends the fits to Spark's executors: ``executors`` always, ``local``
    never, ``auto`` when the Spark master is a cluster (not ``local``/``local[N]``)."""
    if fit_on not in FIT_ON:
        raise ValueError(f"evaluate.fit_on: {fit_on!r} is not one of {', '.join(FIT_ON)}")
    return fit_on == "executors" or (fit_on == "auto" and not master.startswith("local"))


def resolve_workers(workers: int, n_jobs: int) -> int:
    """Worker processes to use: ``workers`` (0 = ``os.cpu_count()``), at most ``n_jobs``, at least 1."""
    w = int(workers) if int(workers) > 0 else (os.cpu_count() or 1)
    return max(1, min(w, int(n_jobs)))


def _init(shared: Any, threads: int) -> None:
    global _SHARED
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        threadpool_limits(int(threads))  # scikit-learn's k-means (tokenizer refits) uses OpenMP too
    _SHARED = shared


def _call(fn: Callable[[Any, Any], Any], job: Any) -> Any:
    return fn(job, _SHARED)


def run_jobs(fn: Callable[[Any, Any], Any], jobs: Sequence[Any], shared: Any, *, workers: int, threads: int, cost: Callable[[Any], float] | None = None,
             desc: str = "jobs", progress: bool = False, spark=None) -> list[Any]:
    """``[fn(job, shared) for job in jobs]``, possibly in a pool of spawned worker processes or on Spark's executors.

    Args:
        fn: a module-level (picklable) function of (job, shared).
        jobs: picklable job descriptions.
        shared: data every job reads (pickled once per worker).
        workers: worker processes (0 = one per CPU); 1 runs in this process. With ``spark``: fits at
            once (0 = one per executor core, ``defaultParallelism``).
        threads: ``torch.set_num_threads`` in the workers (and here while ``workers`` = 1); 0 = leave as is.
        cost: estimated cost of a job; the costliest are submitted first (shortest tail).
        desc, progress: tqdm bar.
        spark: a SparkSession: run each job as a one-task Spark job on the executors (:func:`_run_on_executors`).

    Returns:
        The results in ``jobs`` order.
    """
    from tqdm.auto import tqdm

    if spark is not None and len(jobs):
        return _run_on_executors(spark, fn, jobs, shared, workers=workers, threads=threads, cost=cost, desc=desc, progress=progress)
    n = resolve_workers(workers, len(jobs))
    if n == 1:
        import torch

        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            return [fn(j, shared) for j in tqdm(jobs, desc=desc, disable=not progress)]
        finally:
            torch.set_num_threads(before)
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else list(range(len(jobs)))
    out: list[Any] = [None] * len(jobs)
    # spawn, not fork: the parent holds OpenMP threads (and, in the step, a Py4J gateway)
    with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(shared, threads)) as ex:
        futs = {ex.submit(_call, fn, jobs[i]): i for i in order}
        for f in tqdm(as_completed(futs), total=len(futs), desc=f"{desc} ({n} workers)", disable=not progress):
            out[futs[f]] = f.result()
    return out


def _executor_task(fn: Callable[[Any, Any], Any], name: str, threads: int, job: Any) -> Any:
    """One fit in a Spark Python worker: the shared arrays from the distributed file (once per worker), ``threads`` for the fit only."""
    import torch
    from pyspark import SparkFiles
    from threadpoolctl import threadpool_limits

    if name not in _LOADED:
        _LOADED.clear()  # a reused worker keeps one round's arrays, not every round's
        with open(SparkFiles.get(name), "rb") as f:
            _LOADED[name] = pickle.load(f)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(int(threads) if threads else None):
            return fn(job, _LOADED[name])
    finally:
        torch.set_num_threads(before)  # the worker may run other tasks after this one


def _run_on_executors(spark, fn: Callable[[Any, Any], Any], jobs: Sequence[Any], shared: Any, *, workers: int, threads: int,
                      cost: Callable[[Any], float] | None, desc: str, progress: bool) -> list[Any]:
    """Each job as its own one-task Spark job, costliest submitted first, at most ``workers`` at once
    (0 = ``defaultParallelism``); a failed fit cancels the others and raises."""
    from functools import partial

    from tqdm.auto import tqdm

    sc = spark.sparkContext
    slots = max(1, min(int(workers) if int(workers) > 0 else sc.defaultParallelism, len(jobs)))
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else list(range(len(jobs)))
    group = f"lgsid-fits-{uuid.uuid4().hex[:12]}"
    name = f"{group}.pkl"
    tmp = tempfile.mkdtemp(prefix="lgsid-fits-")
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
    sc.addFile(path)
    task = partial(_executor_task, fn, name, int(threads))

    def one(i: int) -> Any:
        sc.setJobGroup(group, f"{desc}: {jobs[i]}", interruptOnCancel=True)  # thread-local (pinned threads)
        return sc.parallelize([jobs[i]], 1).map(task).collect()[0]

    out: list[Any] = [None] * len(jobs)
    try:
        with ThreadPoolExecutor(max_workers=slots) as ex:
            futs = {ex.submit(one, i): i for i in order}
            try:
                for f in tqdm(as_completed(futs), total=len(futs), desc=f"{desc} ({slots} on executors)", disable=not progress):
                    out[futs[f]] = f.result()
            except BaseException:
                for f in futs:
                    f.cancel()
                sc.cancelJobGroup(group)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
