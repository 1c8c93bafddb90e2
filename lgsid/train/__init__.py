"""Training runtime, independent of what is trained.

* :mod:`lgsid.train.data`: Delta-backed Spark DataFrame -> Petastorm (``make_spark_converter`` ->
  ``make_torch_dataloader``) -> batches collated by the caller's function.
* :mod:`lgsid.train.runtime`: device choice (CUDA + bf16 autocast, else CPU), seeds, resumable
  checkpoints on any local path or URI (:mod:`lgsid.fs`).
* :mod:`lgsid.train.distributed`: run a train function on several processes through Spark's
  ``TorchDistributor``.

The G-DPO loop that uses them lives in :mod:`lgsid.gdpo.loop`.
"""

from lgsid.train.runtime import Checkpointer, autocast, resolve_device, seed_everything

__all__ = ["Checkpointer", "autocast", "resolve_device", "seed_everything"]
