"""G-DPO loop budgets: wall-clock stop, held-out geo early stopping with the best adapter restored,
and the held-out geo metrics on a hand-made layout."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from lgsid.config import replace
from lgsid.gdpo.loop import train_gdpo
from lgsid.gdpo.job import heldout_geo_metrics
from lgsid.reward import RewardMLP


class _Tok:
    """Whitespace tokenizer over a growing vocabulary (enough for make_collate)."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, texts, padding=True, truncation=True, max_length=32, return_tensors="pt"):
        ids = [[1 + self.vocab.setdefault(w, len(self.vocab)) % 97 for w in t.split()][:max_length] for t in texts]
        T = max(len(i) for i in ids)
        return {
            "input_ids": torch.tensor([i + [0] * (T - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (T - len(i)) for i in ids]),
        }


class _Encoder(nn.Module):
    """Mean of token embeddings plus a trainable 'LoRA' linear map that ``reference()`` switches off."""

    cpu_bf16 = False  # as :class:`lgsid.encoder.Encoder` with encoder.cpu_bf16=off

    def __init__(self, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(100, dim)
        self.emb.weight.requires_grad_(False)
        self.lora = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(self.lora.weight, std=0.1)
        self.tokenizer, self.dim, self._ref = _Tok(), dim, False

    def lora_parameters(self):
        return [self.lora.weight]

    @contextmanager
    def reference(self):
        self._ref = True
        try:
            yield
        finally:
            self._ref = False

    def forward(self, input_ids, attention_mask, **_):
        m = attention_mask.unsqueeze(-1).float()
        x = (self.emb(input_ids) * m).sum(1) / m.sum(1)
        return x if self._ref else x + self.lora(x)


class _Converter:
    """Stands in for a Petastorm converter: yields the collated rows in order, ``num_epochs`` times."""

    def __init__(self, rows):
        self.rows = rows

    @contextmanager
    def make_torch_dataloader(self, batch_size, num_epochs, workers_count, data_loader_fn, **_):
        def gen():
            for _ in range(num_epochs or 1):
                for s in range(0, len(self.rows), batch_size):
                    yield self._collate(self.rows[s : s + batch_size])

        yield gen()


def _setup(cfg, **gdpo):
    from lgsid.gdpo.examples import make_collate

    rows = [
        {"anchor_item_id": f"a{i}", "other_item_id": f"b{i}", "pair_type": "geo_constrained", "content_text": f"shop {i}",
         "chosen_location": f"street {i}", "rejected_location": f"road {i + 50}", "true_prompt": f"shop {i}; street {i}"}
        for i in range(40)
    ]
    c = replace(cfg, gdpo={"batch_size": 4, "max_steps": 0, "epochs": 1, "lr": 1e-2, **gdpo}, train={"resume": False})
    enc = _Encoder()
    conv = _Converter(rows)
    conv._collate = make_collate(enc.tokenizer, 32, c.prompts)
    return c, enc, conv, len(rows)


def test_heldout_early_stop_restores_the_best_adapter(cfg):
    c, enc, conv, n = _setup(cfg, eval_every=1, eval_patience=2)
    w0 = enc.lora.weight.detach().clone()
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])  # held-out within-1 km only falls: the start is best
    res = train_gdpo(enc, RewardMLP(8, [4]), conv, c, "cpu", n_examples=n, progress=False, eval_fn=lambda: {"within_1km": next(scores), "T": 0.0})
    assert res["stopped"] == "eval_patience" and [e["step"] for e in res["evals"]] == [0, 1, 2]
    assert res["best_step"] == 0 and res["steps"] == 2
    torch.testing.assert_close(enc.lora.weight.detach(), w0)  # the trained steps were rolled back


def test_heldout_improving_keeps_training_and_last_weights(cfg):
    c, enc, conv, n = _setup(cfg, eval_every=5, eval_patience=1)
    scores = iter(np.linspace(0.1, 0.9, 20))
    res = train_gdpo(enc, RewardMLP(8, [4]), conv, c, "cpu", n_examples=n, progress=False, eval_fn=lambda: {"within_1km": next(scores), "T": 0.0})
    assert res["stopped"] == "steps" and res["steps"] == 10  # 40 rows / batch 4
    assert [e["step"] for e in res["evals"]] == [0, 5, 10] and res["best_step"] == 10


def test_wall_clock_budget_stops_after_the_crossing_step(cfg):
    c, enc, conv, n = _setup(cfg, max_seconds=1e-9)
    res = train_gdpo(enc, RewardMLP(8, [4]), conv, c, "cpu", n_examples=n, progress=False)
    assert res["stopped"] == "max_seconds" and res["steps"] == 1 and res["evals"] == []


def test_heldout_geo_metrics_hand_made_layout():
    # Two pairs of items 0.11 km apart (0.001 deg lat), the pairs ~111 km apart; embeddings pair 0-2 and 1-3,
    # i.e. each item's nearest embedding neighbour is the far one -> within_1km 0; swap -> 1.
    lat = np.array([0.0, 0.001, 1.0, 1.001])
    lon = np.zeros(4)
    town = np.array(["x", "x", "y", "y"])
    st = co = np.array(["s"] * 4)
    far = np.array([[1.0, 0], [0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    m = heldout_geo_metrics(far, lat, lon, st, co, town, k=1)
    assert m["within_1km"] == 0.0 and m["T@1"] == 0.0 and m["km_median"] == pytest.approx(111.2, abs=0.5)
    near = np.array([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    m = heldout_geo_metrics(near, lat, lon, st, co, town, k=1)
    assert m["within_1km"] == 1.0 and m["T@1"] == 1.0 and m["km_median"] == pytest.approx(0.111, abs=0.002)
