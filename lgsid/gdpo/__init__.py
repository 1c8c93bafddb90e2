"""G-DPO: geographic DPO post-training of the item encoder with LoRA (Eq. 6-8, arXiv 2511.14221).

* :mod:`lgsid.gdpo.losses`: Eq. 6-8 as pure functions and their value on one batch.
* :mod:`lgsid.gdpo.examples`: D_mix examples from ``gdpo_pairs`` × ``geo_prompts`` and the collate step.
* :mod:`lgsid.gdpo.loop`: the training loop, top to bottom (in process, or per TorchDistributor rank).
* :mod:`lgsid.gdpo.job`: what the ``gdpo`` step (:mod:`lgsid.steps.gdpo`) does around the loop: fingerprint, held-out geo check, plots, registration, re-embedding.

Submodules import each other, never this package, so importing any of them has no cycle.
"""

from lgsid.gdpo.examples import EXAMPLE_COLUMNS, build_examples, load_examples, make_collate
from lgsid.gdpo.losses import gdpo_align_loss, gdpo_batch_loss, gdpo_objective, similarity_loss
from lgsid.gdpo.loop import train_distributed, train_gdpo, train_in_process
from lgsid.gdpo.job import coverage_frames, embed_missing, input_fingerprint, log_aligned_encoder

__all__ = [
    "EXAMPLE_COLUMNS", "build_examples", "load_examples", "make_collate",
    "gdpo_align_loss", "gdpo_batch_loss", "gdpo_objective", "similarity_loss",
    "train_distributed", "train_gdpo", "train_in_process",
    "coverage_frames", "embed_missing", "input_fingerprint", "log_aligned_encoder",
]
