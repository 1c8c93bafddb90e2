"""SID tokenizers: HGIT (LGSID, Eq. 9–16) and the RQ-VAE / RQ-KMeans baselines, one interface.

    tok = build_tokenizer(cfg.tokenizer)            # or kind="rqvae" / "rqkmeans"
    codes = tok.fit(emb, features).encode(emb, features)   # (N, L) int64, no suffix
    suffix = dedup_suffix(codes)                     # (N,) collision suffix
    metrics = codebook_health(codes, cfg.tokenizer.codebook_sizes, features["category_l1"])

``features`` has columns lat, lon, state, county, town, category_l1, category_l2, brand (only
HGIT uses them). The step ``lgsid tokenize`` (:func:`run`) trains on the item embeddings, logs
health metrics and plots, registers the tokenizer as an MLflow pyfunc and writes ``sid_items``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgsid.config import TokenizerConfig
from lgsid.tokenizer.base import SIDTokenizer, load_tokenizer, save_tokenizer
from lgsid.tokenizer.dedup import dedup_suffix, format_sid, incremental_suffix
from lgsid.tokenizer.features import FEATURE_COLUMNS
from lgsid.tokenizer.health import codebook_health, collision_rate, health_plots
from lgsid.tokenizer.hgit import HGITTokenizer
from lgsid.tokenizer.rqkmeans import RQKMeansTokenizer
from lgsid.tokenizer.rqvae import RQVAETokenizer

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import LGSIDConfig
    from lgsid.steps import StepSummary

TOKENIZERS: dict[str, type[SIDTokenizer]] = {
    "hgit": HGITTokenizer,
    "rqvae": RQVAETokenizer,
    "rqkmeans": RQKMeansTokenizer,
}


def build_tokenizer(cfg: TokenizerConfig, kind: str | None = None) -> SIDTokenizer:
    """An unfitted tokenizer of ``kind`` (default ``cfg.kind``) configured by ``cfg``.

    Raises:
        ValueError: unknown kind; the message lists the valid ones.
    """
    kind = kind or cfg.kind
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; valid kinds: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind](cfg)


def run(spark, cfg: "LGSIDConfig") -> "StepSummary":
    """Step ``tokenize``: fit the configured tokenizer, log + register it, write ``sid_items``."""
    from lgsid.tokenizer.job import run_tokenize

    return run_tokenize(spark, cfg)


__all__ = [
    "TOKENIZERS", "FEATURE_COLUMNS", "SIDTokenizer", "build_tokenizer", "load_tokenizer", "save_tokenizer",
    "dedup_suffix", "incremental_suffix", "format_sid", "codebook_health", "collision_rate", "health_plots", "run",
]
