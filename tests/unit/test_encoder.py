"""Encoder: pooling, config errors, and LoRA training that leaves the reference untouched (TRL style)."""

import dataclasses

import numpy as np
import pytest
import torch

from lgsid.config import EncoderConfig, GDPOConfig, load_config
from lgsid.encoder import load_encoder, pool, resolve_checkpoint
from lgsid.errors import ConfigError, ModelError

TEXTS = ["Joe's Pizza, Food / Pizza; located in Austin, Travis County, Texas",
         "Joe's Pizza, Food / Pizza; located in Buffalo, Erie County, New York",
         "Blue Bottle, Food / Coffee; located in Oakland, Alameda County, California",
         "Ace Hardware, Shopping / Hardware; located in Chicago, Cook County, Illinois"]


@pytest.fixture(scope="module")
def enc_cfg():
    # float32 on every machine: these tests check exact (1e-5) properties such as batch invariance.
    # encoder.cpu_bf16=auto would turn bf16 on where the CPU has native bf16 (AVX512-BF16/AMX), and
    # a bf16 vector moves by ~5e-4 with the batch it was padded in; that path has its own test below.
    # runtime=torch: these tests check torch's passes; ONNX Runtime is checked against them in test_encoder_onnx.py.
    return EncoderConfig(max_length=32, batch_size=4, cpu_bf16="off", runtime="torch")


def test_pool_mean_and_cls_by_hand():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])  # (1, 3, 2), last token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]
    with pytest.raises(ConfigError, match="encoder.pooling.*valid: mean, cls"):
        pool(hidden, mask, "max")


def test_unknown_pooling_is_a_config_error():
    with pytest.raises(ConfigError, match="encoder.pooling"):
        load_config(None, ["encoder.pooling=max"])


def test_missing_checkpoint_path_and_package():
    with pytest.raises(ModelError, match="encoder.checkpoint='/nonexistent/bge'.*does not exist"):
        resolve_checkpoint("/nonexistent/bge")
    with pytest.raises(ModelError, match="not installed"):
        load_encoder(EncoderConfig(checkpoint="package:no_such_pkg_xyz"))


def test_encode_shape_norm_and_pooling_from_config(enc_cfg):
    enc = load_encoder(enc_cfg)
    x = enc.encode(TEXTS)
    assert x.shape == (4, enc.dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    raw = load_encoder(dataclasses.replace(enc_cfg, pooling="cls", normalize=False)).encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # cls, unnormalised: a different vector
    # batching does not change the result
    np.testing.assert_allclose(enc.encode(TEXTS, batch_size=1), x, atol=1e-5)


def test_lora_training_changes_only_the_adapter(enc_cfg, tmp_path):
    from lgsid.gdpo import gdpo_batch_loss
    from lgsid.reward import RewardMLP

    torch.manual_seed(0)
    enc = load_encoder(enc_cfg)
    before_ref = enc.encode(TEXTS)
    enc.add_lora()
    lora = {n: p.detach().clone() for n, p in enc.named_parameters() if p.requires_grad}
    base = {n: p.detach().clone() for n, p in enc.named_parameters() if not p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    assert not any("lora_" in n for n in base)
    reward = RewardMLP(enc.dim, [16]).requires_grad_(False)
    opt = torch.optim.AdamW(enc.lora_parameters(), lr=1e-2)
    batch = dict(enc.tokenize(TEXTS[:2] + TEXTS[2:] + TEXTS[:2]))  # chosen, rejected, true (B = 2)
    batch["n"] = 2
    g = GDPOConfig(batch_size=2)
    for _ in range(3):
        loss, _ = gdpo_batch_loss(enc, enc, reward, batch, g, "cpu")
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = [n for n, p in enc.named_parameters() if n in lora and not torch.equal(p, lora[n])]
    assert changed, "no LoRA parameter moved"
    for n, p in enc.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"base parameter {n} changed"
    assert all(p.grad is None for n, p in enc.named_parameters() if n in base)
    with enc.reference():
        np.testing.assert_allclose(enc.encode(TEXTS), before_ref, atol=1e-6)  # the reference stays frozen
    after = enc.encode(TEXTS)
    assert not np.allclose(after, before_ref, atol=1e-4)  # the policy moved
    # the saved adapter reloads to the same policy
    enc.save_adapter(str(tmp_path / "adapter"))
    again = load_encoder(enc_cfg, adapter_dir=str(tmp_path / "adapter"))
    np.testing.assert_allclose(again.encode(TEXTS), after, atol=1e-5)
    # by default the adapter is merged into the base weights: no LoRA modules left, same vectors
    assert not again.has_lora and not any("lora_" in n for n, _ in again.named_parameters())
    unmerged = load_encoder(enc_cfg, adapter_dir=str(tmp_path / "adapter"), merge=False)
    assert unmerged.has_lora
    np.testing.assert_allclose(unmerged.encode(TEXTS), again.encode(TEXTS), atol=1e-5)


def test_missing_adapter_dir(enc_cfg, tmp_path):
    with pytest.raises(ModelError, match="no adapter_config.json"):
        load_encoder(enc_cfg, adapter_dir=str(tmp_path))


@pytest.mark.gpu
def test_bf16_autocast_training_step_on_cuda(enc_cfg):
    from lgsid.gdpo import gdpo_batch_loss
    from lgsid.reward import RewardMLP
    from lgsid.train import resolve_device

    device = resolve_device("auto")
    assert device == "cuda"
    torch.manual_seed(0)
    enc = load_encoder(enc_cfg, device=device).add_lora()
    reward = RewardMLP(enc.dim, [16]).to(device).requires_grad_(False)
    lora = {n: p.detach().clone() for n, p in enc.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(enc.lora_parameters(), lr=1e-2)
    batch = dict(enc.tokenize(TEXTS[:2] + TEXTS[2:] + TEXTS[:2]))
    batch["n"] = 2
    for _ in range(2):
        loss, parts = gdpo_batch_loss(enc, enc, reward, batch, GDPOConfig(batch_size=2), device)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and parts["l_align"].dtype == torch.float32
    assert any(not torch.equal(p, lora[n]) for n, p in enc.named_parameters() if n in lora)


@pytest.mark.gpu
def test_encode_on_cuda_runs_under_bf16_autocast_and_returns_float32(enc_cfg):
    from lgsid.train import resolve_device

    assert resolve_device("auto") == "cuda"
    gpu = load_encoder(enc_cfg, device="cuda").encode(TEXTS)
    cpu = load_encoder(enc_cfg, device="cpu").encode(TEXTS)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    cos = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cos.min() > 0.99  # bf16 matmuls, same model


def test_cpu_bf16_setting():
    from lgsid.train.runtime import cpu_bf16_supported, use_cpu_bf16

    assert use_cpu_bf16("on") is True and use_cpu_bf16("off") is False
    assert use_cpu_bf16("auto") is cpu_bf16_supported()
    with pytest.raises(ConfigError, match=r"encoder\.cpu_bf16"):
        use_cpu_bf16("fast")
    with pytest.raises(ConfigError, match=r"encoder\.cpu_bf16"):
        load_config(None, ["encoder.cpu_bf16=fast"])


def test_encode_with_cpu_bf16_is_float32_and_close_to_fp32(enc_cfg):
    fp32 = load_encoder(dataclasses.replace(enc_cfg, cpu_bf16="off"))
    bf16 = load_encoder(dataclasses.replace(enc_cfg, cpu_bf16="on"))
    assert not fp32.cpu_bf16 and bf16.cpu_bf16
    x, y = fp32.encode(TEXTS), bf16.encode(TEXTS)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)  # pooled and normalised in float32
    cos = (x * y).sum(axis=1)
    assert cos.min() > 0.999  # bf16 keeps the direction (measured: >= 0.99997)
    # the same texts rank the same nearest neighbour
    assert ((x @ x.T - 2 * np.eye(4)).argmax(1) == (y @ y.T - 2 * np.eye(4)).argmax(1)).all()


def test_encode_batches_by_length_and_returns_rows_in_input_order(enc_cfg):
    from lgsid.encoder import length_order

    enc = load_encoder(enc_cfg)
    texts = ["a much longer text about a pizza place located in Tempe, Maricopa County, Arizona", "cafe", "a laundry in Buffalo", "x"]
    ids = [enc.tokenizer(t)["input_ids"] for t in texts]
    order = length_order(ids)
    lens = [len(x) for x in ids]
    assert lens[1] == lens[3] == 3 and lens[2] < lens[0]  # "cafe" and "x": one word piece + [CLS]/[SEP]
    assert order.tolist() == [1, 3, 2, 0]  # shortest first; ties keep input order
    x = enc.encode(texts, batch_size=2)
    one = np.stack([enc.encode([t])[0] for t in texts])  # each text alone: no padding at all
    np.testing.assert_allclose(x, one, atol=1e-5)
