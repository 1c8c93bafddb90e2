"""The SID model as an MLflow pyfunc (logged with ``code_paths=[this file]``).

Two entry modes, chosen by the ``mode`` param (``predict(df, params={"mode": ...})``):

* ``"embedding"`` (default, the fast path) — rows with ``embedding_f32`` (BINARY: the embedding as
  little-endian float32 bytes, ``4 · dim`` per row; build it with
  :func:`lgsid.embedding_f32.encode_f32`) plus the item attributes (lat, lon, state, county, town,
  category_l1, category_l2, brand). The batch's bytes are joined and read with one
  ``np.frombuffer`` into an (N, D) matrix, then assigned with one matmul per level. This is what
  the write-back Spark UDF feeds: a BINARY column crosses Spark's JVM -> Arrow boundary as one
  buffer, an ARRAY<FLOAT> column element by element.
* ``"cold_start"`` — raw item rows (name, brand, category_l1/_l2, price, town, county, state, lat,
  lon): the prompt is built with :mod:`lgsid.prompts` and embedded with the encoder the tokenizer
  was trained on (the aligned LoRA adapter is packaged with the model when the embeddings were
  aligned ones), then assigned as above.

The mode is explicit so that a caller who forgot ``embedding_f32`` gets an error instead of
embeddings silently recomputed from the raw fields.

Output columns: ``sid_l1, sid_l2, sid_l3`` (INT; null past the model's levels), ``sid_codes``
(``"l1-l2-l3"``; the dedup suffix is assigned by the write-back job, which knows existing items)
and ``sid_path`` (the readable "state / county / category" of the level-1 code's centre).
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd

from lgsid.embedding_f32 import COLUMN as EMBEDDING_F32
from lgsid.embedding_f32 import decode_f32
from lgsid.errors import ValidationError

OUTPUT_COLUMNS = ("sid_l1", "sid_l2", "sid_l3", "sid_codes", "sid_path")
SPARK_RESULT_TYPE = "sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_codes STRING, sid_path STRING"
MODES = ("embedding", "cold_start")
RAW_COLUMNS = ("name", "brand", "category_l1", "category_l2", "price", "town", "county", "state", "lat", "lon")


class SIDModel(mlflow.pyfunc.PythonModel):
    """Tokenizer + level-1 paths (+ optional aligned encoder) behind ``predict``."""

    def load_context(self, context):
        from lgsid.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(context.artifacts["tokenizer"])
        with open(context.artifacts["sid_model_info"]) as f:
            self.info = json.load(f)
        self.l1_paths = np.asarray(self.info["l1_paths"], dtype=object)
        self.adapter_dir = context.artifacts.get("adapter")
        self._encoder = None

    # ------------------------------------------------------------------ cold start
    def _encoder_and_prompts(self):
        from lgsid.config import EncoderConfig, PromptsConfig
        from lgsid.encoder import load_encoder

        if self._encoder is None:
            enc_fields = set(EncoderConfig.__dataclass_fields__)
            pr_fields = set(PromptsConfig.__dataclass_fields__)
            enc_cfg = EncoderConfig(**{k: v for k, v in self.info["encoder"].items() if k in enc_fields})
            self._prompts_cfg = PromptsConfig(**{k: v for k, v in self.info["prompts"].items() if k in pr_fields})
            self._encoder = load_encoder(enc_cfg, adapter_dir=self.adapter_dir)
        return self._encoder, self._prompts_cfg

    def embed_raw(self, df: pd.DataFrame) -> np.ndarray:
        """Cold start: raw item rows -> prompts (lgsid.prompts) -> (N, D) embeddings (lgsid.encoder)."""
        from lgsid.prompts import combine_prompt, format_content, format_location

        missing = [c for c in RAW_COLUMNS if c not in df.columns]
        if missing:
            raise ValidationError(f"SID model (mode 'cold_start'): raw item rows need the columns {list(RAW_COLUMNS)}; missing {missing}")
        enc, pcfg = self._encoder_and_prompts()
        rows = df.to_dict("records")
        prompts = [combine_prompt(format_content(r, pcfg), format_location(r, pcfg), pcfg) for r in rows]
        return np.asarray(enc.encode(prompts), dtype=np.float32)

    # ------------------------------------------------------------------ predict
    def predict(self, context, model_input, params=None):
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        mode = (params or {}).get("mode", "embedding")
        if mode == "cold_start":
            emb = self.embed_raw(df)
        elif mode == "embedding":
            if EMBEDDING_F32 not in df.columns:
                raise ValidationError(
                    f"SID model: column '{EMBEDDING_F32}' is missing (mode 'embedding'): pass each embedding as float32 "
                    "bytes (lgsid.embedding_f32.encode_f32), or raw item rows with params={'mode': 'cold_start'}")
            ids = df["item_id"] if "item_id" in df.columns else None
            emb = decode_f32(df[EMBEDDING_F32], int(self.tokenizer.dim), ids)  # (N, D), one frombuffer
        else:
            raise ValidationError(f"SID model: unknown param mode={mode!r}; expected one of {list(MODES)}")
        codes = self.tokenizer.encode(emb, df)
        return sids_frame(codes, self.l1_paths)


def sids_frame(codes: np.ndarray, l1_paths: np.ndarray) -> pd.DataFrame:
    """(N, L) codes -> the model's output frame (see module docstring).

    Strings are gathered from per-level tables of ``K_l`` entries (``"12"``, ``"-7"``, ...), so a
    batch costs two object concatenations per row for ``sid_codes`` and one gather for ``sid_path``.
    """
    n, L = codes.shape
    out = {}
    for l in range(3):
        out[f"sid_l{l + 1}"] = codes[:, l].astype(np.int32) if l < L else pd.array([None] * n, dtype="Int32")
    s = _code_strings(codes[:, 0], "")
    for l in range(1, L):
        s = s + _code_strings(codes[:, l], "-")  # (N,) object
    out["sid_codes"] = s
    out["sid_path"] = l1_paths[codes[:, 0]]
    return pd.DataFrame(out)


def _code_strings(c: np.ndarray, prefix: str) -> np.ndarray:
    """(N,) int codes -> (N,) object array of ``prefix + str(code)`` via a table of max(code) + 1 strings."""
    if len(c) == 0:
        return np.zeros(0, dtype=object)
    table = np.array([prefix + str(i) for i in range(int(c.max()) + 1)], dtype=object)
    return table[c]
