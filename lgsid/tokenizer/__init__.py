"""SID tokenizers: HGIT (LGSID, Eq. 9–16) and the RQ-VAE / RQ-KMeans baselines, one interface.

    tok = build_tokenizer(cfg.tokenizer)            # or kind="rqvae" / "rqkmeans"
    codes = tok.fit(emb, features).encode(emb, features)   # (N, L) int64, no suffix
    suffix = dedup_suffix(codes)                     # (N,) collision suffix
    metrics = codebook_health(codes, cfg.tokenizer.codebook_sizes, features["category_l1"])

``features`` has columns lat, lon, state, county, town, category_l1, category_l2, brand (only
HGIT uses them). Importing this package registers the three kinds in ``TOKENIZERS`` (kept in
:mod:`.base`). The step ``lgsid tokenize`` (:mod:`lgsid.steps.tokenize_sids`, with the fit in
:mod:`lgsid.tokenizer.job`) trains on the item embeddings, logs health metrics and plots,
registers the tokenizer as the SID pyfunc (:mod:`lgsid.serving.sid_model`) and writes ``sid_items``.
"""

from __future__ import annotations

from lgsid.tokenizer.base import TOKENIZERS, SIDTokenizer, build_tokenizer, load_tokenizer, save_tokenizer
from lgsid.tokenizer.dedup import dedup_suffix, format_sid
from lgsid.tokenizer.features import FEATURE_COLUMNS
from lgsid.tokenizer.health import codebook_health, collision_rate, health_plots
# import order = registration order in TOKENIZERS = the order errors list the kinds (HGIT, then the baselines)
from lgsid.tokenizer.hgit import HGITTokenizer  # isort: skip
from lgsid.tokenizer.rqvae import RQVAETokenizer  # isort: skip
from lgsid.tokenizer.rqkmeans import RQKMeansTokenizer  # isort: skip

__all__ = [
    "TOKENIZERS", "FEATURE_COLUMNS", "SIDTokenizer", "HGITTokenizer", "RQVAETokenizer", "RQKMeansTokenizer", "build_tokenizer",
    "load_tokenizer", "save_tokenizer", "dedup_suffix", "format_sid", "codebook_health", "collision_rate",
    "health_plots",
]
