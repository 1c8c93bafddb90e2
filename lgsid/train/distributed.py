"""Multi-GPU / multi-node G-DPO through Spark's ``TorchDistributor``.

Each rank loads the base encoder + a fresh LoRA adapter (same seed, so identical initial weights),
wraps it in ``DistributedDataParallel``, reads its Petastorm shard (``cur_shard=rank``) and runs
:func:`lgsid.train.gdpo_loop.train_gdpo`. Rank 0 saves the adapter and returns the history.
``local_mode`` follows the Spark master (local[...] -> processes on the driver).
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from lgsid.config import LGSIDConfig

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


def _rank_main(cfg: LGSIDConfig, converter, n_examples: int, out_dir: str) -> dict | None:
    """Body of one TorchDistributor process (rank and world size from the environment)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from lgsid.encoder import load_encoder
    from lgsid.reward import load_reward_model, reward_model_dir
    from lgsid.train.gdpo_loop import train_gdpo
    from lgsid.train.runtime import resolve_device, seed_everything

    device = resolve_device(cfg.train.device)
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        reward = load_reward_model(reward_model_dir(cfg)).to(device)
        seed_everything(cfg.gdpo.seed)
        encoder = load_encoder(cfg.encoder, device=device).add_lora()
        model = DDP(encoder, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
        result = train_gdpo(encoder, reward, converter, cfg, device, n_examples=n_examples, rank=rank, world=world, model=model)
        if rank == 0:
            encoder.save_adapter(out_dir)
            result["dim"] = encoder.dim
            return result
        return None
    finally:
        dist.destroy_process_group()


def train_distributed(spark: "SparkSession", examples: "DataFrame", cfg: LGSIDConfig, n_examples: int) -> tuple[str, dict, int]:
    """Run G-DPO on ``train.num_processes`` processes. Returns (adapter dir, rank-0 result, embedding dim)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from lgsid.train.data import make_converter
    from lgsid.train.runtime import resolve_device

    device = resolve_device(cfg.train.device)
    local = spark.sparkContext.master.startswith("local")
    out_dir = tempfile.mkdtemp(prefix="lgsid-adapter-", dir=os.path.abspath(cfg.pipeline.work_dir)) if local else os.path.join(cfg.pipeline.work_dir, "models", "dist-adapter")
    # Petastorm shards by row group (one per file here): give every rank at least two.
    converter = make_converter(examples.repartition(2 * cfg.train.num_processes))
    try:
        result = TorchDistributor(num_processes=cfg.train.num_processes, local_mode=local, use_gpu=device == "cuda").run(
            _rank_main, cfg, converter, n_examples, out_dir
        )
    finally:
        converter.delete()
    return out_dir, result, int(result["dim"])
