"""Step ``embed``: embed item prompts into ``item_embeddings`` with the encoder ``encoder.embed_version`` names (:mod:`lgsid.embed`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.embed import REFERENCE, aligned_model_uri, embed_items
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``embed``: embed items with the encoder chosen by ``encoder.embed_version``.

    Only rows whose input (prompt, encoder settings: ``input_sha``) changed are embedded and written (see :func:`embed_items`).
    """
    which = cfg.encoder.embed_version
    if which == REFERENCE:
        version, adapter = REFERENCE, None
    else:
        version, adapter = aligned_model_uri(cfg, which)
    wr = embed_items(spark, cfg, version, adapter)
    return StepSummary("embed", tables=[wr], metrics={"model_version": version}, notes=[f"checkpoint: {cfg.encoder.checkpoint}"])
