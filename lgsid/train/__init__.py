"""Training runtime shared by the alignment stages.

* :mod:`lgsid.train.data`: Delta-backed Spark DataFrame -> Petastorm (``make_spark_converter`` ->
  ``make_torch_dataloader``) -> batches tokenised in the collate step.
* :mod:`lgsid.train.runtime`: device choice (CUDA + bf16 autocast, else CPU), seeds, resumable checkpoints.
* :mod:`lgsid.train.gdpo_loop`: the G-DPO optimisation loop (single process, or one rank under
  Spark's ``TorchDistributor`` via :mod:`lgsid.train.distributed`).
"""

from lgsid.train.runtime import Checkpointer, autocast, resolve_device, seed_everything

__all__ = ["Checkpointer", "autocast", "resolve_device", "seed_everything"]
