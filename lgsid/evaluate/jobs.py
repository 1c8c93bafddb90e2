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
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

_SHARED: Any = None


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
             desc: str = "jobs", progress: bool = False) -> list[Any]:
    """``[fn(job, shared) for job in jobs]``, possibly in a pool of spawned worker processes.

    Args:
        fn: a module-level (picklable) function of (job, shared).
        jobs: picklable job descriptions.
        shared: data every job reads (pickled once per worker).
        workers: worker processes (0 = one per CPU); 1 runs in this process.
        threads: ``torch.set_num_threads`` in the workers (and here while ``workers`` = 1); 0 = leave as is.
        cost: estimated cost of a job; the costliest are submitted first (shortest tail).
        desc, progress: tqdm bar.

    Returns:
        The results in ``jobs`` order.
    """
    from tqdm.auto import tqdm

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
