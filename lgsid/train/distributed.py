"""Run a training function on several processes through Spark's ``TorchDistributor`` (generic).

:func:`run_distributed` starts ``num_processes`` processes (``local_mode`` follows the Spark master:
``local[...]`` -> processes on the driver, else one per task on the executors); each one joins the
``torch.distributed`` process group (NCCL on CUDA, else gloo), calls ``train_fn(rank, world, device,
*args)`` and leaves the group. The return value is rank 0's. Nothing here knows what is trained:
arguments and results travel pickled, so no rank needs a path another process wrote.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


def _rank_entry(train_fn: Callable[..., Any], device: str, *args: Any) -> Any:
    """Body of one TorchDistributor process: process group around ``train_fn(rank, world, device, *args)``."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        return train_fn(dist.get_rank(), dist.get_world_size(), device, *args)
    finally:
        dist.destroy_process_group()


def run_distributed(spark: "SparkSession", train_fn: Callable[..., Any], *args: Any, num_processes: int, device: str) -> Any:
    """``train_fn(rank, world, device, *args)`` on ``num_processes`` TorchDistributor processes.

    Args:
        spark: The active session (its master decides ``local_mode``).
        train_fn: A module-level function (pickled by reference) run by every rank.
        *args: Its further arguments (pickled to every rank).
        num_processes: World size.
        device: ``cpu`` (gloo) or ``cuda`` (NCCL, one GPU per process).

    Returns:
        Rank 0's return value.
    """
    from pyspark.ml.torch.distributor import TorchDistributor

    local = spark.sparkContext.master.startswith("local")
    return TorchDistributor(num_processes=num_processes, local_mode=local, use_gpu=device == "cuda").run(
        _rank_entry, train_fn, device, *args
    )
