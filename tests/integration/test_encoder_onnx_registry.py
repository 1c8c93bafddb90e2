"""A registered aligned encoder carries its ONNX export: a fresh environment (empty cache) runs it without exporting."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")

TEXTS = ["Joe's Pizza, Food / Pizza; located in Austin, Travis County, Texas", "cafe",
         "Blue Bottle, Food / Coffee; located in Oakland, Alameda County, California", "x", "a laundry in Buffalo"]


def test_registered_aligned_encoder_ships_its_onnx_export(cfg, tmp_path, monkeypatch):
    import mlflow

    from lgsid import embed, encoder_onnx
    from lgsid.config import replace
    from lgsid.encoder import load_encoder
    from lgsid.gdpo import log_aligned_encoder
    from lgsid.tracking import setup_mlflow, tracking_uri

    cache = str(tmp_path / "onnx-cache")
    c = replace(cfg, encoder={"max_length": 32, "batch_size": 2, "cpu_bf16": "off", "onnx_cache_dir": cache})
    torch.manual_seed(0)
    pol = load_encoder(c.encoder, runtime="torch").add_lora()
    with torch.no_grad():
        for n, p in pol.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    adapter = str(tmp_path / "adapter")
    pol.save_adapter(adapter)
    want = load_encoder(c.encoder, adapter_dir=adapter, runtime="torch").encode(TEXTS)

    setup_mlflow(c)
    with mlflow.start_run():
        mv = log_aligned_encoder(c, adapter, pol.dim)
    uri = f"models:/{c.mlflow.encoder_model_name}/{mv.version}"
    local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "download"))
    shipped = encoder_onnx.find_export(local)
    assert shipped is not None and os.path.basename(shipped) == "onnx"

    # a fresh environment: nothing cached, and exporting is not allowed
    shutil.rmtree(cache)
    monkeypatch.setattr(encoder_onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    enc = embed.worker_encoder(c.encoder, uri, tracking_uri(c))  # the Spark UDF's encoder
    assert enc.runtime == "onnxruntime" and not enc.onnx_dir.startswith(cache)
    assert os.path.basename(enc.onnx_dir) == "onnx" and not os.path.exists(enc.onnx_dir)  # the shipped export, its download removed once loaded
    assert np.abs(enc.encode(TEXTS) - want).max() <= 1e-4
    assert not os.path.exists(cache)

    # serving: the pyfunc runs the shipped export too
    model = mlflow.pyfunc.load_model(uri)
    served = model.unwrap_python_model().encoder
    assert served.runtime == "onnxruntime" and not served.onnx_dir.startswith(cache)
    assert np.abs(np.asarray(model.predict(pd.DataFrame({"prompt": TEXTS}))) - want).max() <= 1e-4
