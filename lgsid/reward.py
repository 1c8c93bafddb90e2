"""The list-wise geographic reward model (Eq. 2-4, arXiv 2511.14221); the step is :mod:`lgsid.steps.reward`.

``r_ij = MLP(E_j^i)`` scores the *frozen reference* embedding of the mismatched prompt
``[content_i, location_j]``. With ``reward.conditioning=anchor`` (our departure, docs/method.md) the
MLP also sees the reference embedding of the anchor's true prompt:
``r_ij = MLP([E_j^i, √D · E_true^i ⊙ E_j^i])`` (:func:`anchor_features`). Each training list is one anchor's true prompt followed by its K
candidate locations sorted near -> far (``reward_lists``); the soft labels of Eq. 3 give the true
location 1 and decay with the distance rank. The loss is a soft-label weighted BCE (Eq. 4 as
printed is unbounded, see :func:`listwise_bce`); ``reward.mode=pointwise`` trains true vs one far
location instead (the paper's DPO-PR ablation).

The list prompts are embedded once, by the Spark embedding UDF (:func:`lgsid.embed.embed_dataframe`)
with the frozen reference encoder; the MLP trains on those cached embeddings in memory.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, get_args, get_type_hints

import numpy as np
import torch
from torch import nn

from lgsid.config import LGSIDConfig, RewardConfig
from lgsid.errors import ModelError, ValidationError
from lgsid.negatives import soft_labels  # Eq. 3: one function, shared with the negatives step
from lgsid.prompts import combine_prompt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


# --------------------------------------------------------------------------------------------
# Equations
# --------------------------------------------------------------------------------------------


REWARD_CONDITIONINGS: tuple[str, ...] = get_args(get_type_hints(RewardConfig)["conditioning"])
"""Valid ``reward.conditioning`` values, read from the config field's ``Literal`` (one list of them)."""


def anchor_features(emb: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Input of the anchor-conditioned reward: ``x_ij = [E_j^i, √D · (E_true^i ⊙ E_j^i)]`` (our departure from Eq. 2).

    Eq. 2 scores ``E_j^i`` alone, the embedding of ``[content_i, location_j]``; when the content says
    nothing about where item i is (Phoenix: the category only), no function of ``E_j^i`` can tell
    a location 1 km from i from one 15 km away. The element-wise product with the embedding of the
    anchor's *true* prompt ``[content_i, location_i]`` lets a linear layer form any weighted
    similarity ``Σ_d w_d E_true,d E_j,d`` (equal weights: the cosine for unit vectors), so the reward
    can score "how close is location j to i's own location" (docs/method.md, Alignment). The
    factor √D gives both halves the same per-component scale for unit vectors (~1/√D); without it
    the product's components are ~1/D and the MLP learns the similarity direction slowly (on a
    Phoenix sample it stopped early at near-vs-far AUC 0.58, against 0.92 with √D).

    Args:
        emb: (..., D) embeddings E_j of the candidate prompts.
        anchor: (..., D) embeddings E_true of the anchors' true prompts, broadcastable to ``emb``
            (e.g. (L, 1, D) for lists of shape (L, J, D)).

    Returns:
        (..., 2D) features, ``emb`` first.
    """
    d = emb.shape[-1]
    return torch.cat([emb, math.sqrt(d) * (anchor.expand_as(emb) * emb)], dim=-1)  # (..., 2D)


class RewardMLP(nn.Module):
    """The reward model ``r_ij = MLP(E_j^i)`` — Eq. 2, arXiv 2511.14221 — or its anchor-conditioned form.

    An MLP (ReLU between layers) to one scalar logit. With ``conditioning="none"`` (Eq. 2) its
    input is the D-dim prompt embedding; with ``"anchor"`` it is the 2D-dim
    :func:`anchor_features` ``[E_j, E_true ⊙ E_j]``, and ``forward`` needs the anchor embedding.

    Args:
        dim: D, embedding dimension.
        hidden_sizes: hidden layer widths.
        conditioning: ``"none"`` or ``"anchor"`` (:data:`REWARD_CONDITIONINGS`).
    """

    def __init__(self, dim: int, hidden_sizes: list[int], conditioning: str = "none"):
        super().__init__()
        if conditioning not in REWARD_CONDITIONINGS:
            raise ValueError(f"unknown reward.conditioning {conditioning!r}; valid: {', '.join(REWARD_CONDITIONINGS)}")
        layers: list[nn.Module] = []
        prev = dim if conditioning == "none" else 2 * dim
        for h in hidden_sizes:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)
        self.dim = dim
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.conditioning = conditioning

    def forward(self, emb: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Reward logits r_ij.

        Args:
            emb: (..., D) prompt embeddings E_j.
            anchor: (..., D) (broadcastable) true-prompt embeddings E_true; required with
                ``conditioning="anchor"``, refused with ``"none"`` (Eq. 2 does not see the anchor).

        Returns:
            (...) logits.
        """
        if self.conditioning == "anchor":
            if anchor is None:
                raise ValueError("this reward model is anchor-conditioned (reward.conditioning=anchor): pass the anchors' true-prompt embeddings")
            emb = anchor_features(emb, anchor)
        elif anchor is not None:
            raise ValueError("this reward model is Eq. 2 (reward.conditioning=none): it takes no anchor embedding")
        return self.net(emb).squeeze(-1)


def listwise_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Soft-label weighted binary cross-entropy over lists — our bounded form of Eq. 4, arXiv 2511.14221.

    Eq. 4 as printed, ``L_RM = −Σ_i Σ_j p_ij log σ(r_ij)``, has only the positive term: it is
    minimised by pushing every r_ij to +inf and does not rank anything. We add the negative term:

    ``L = mean_lists [ (1/n_i) Σ_j −( p_ij log σ(r_ij) + (1 − p_ij) log(1 − σ(r_ij)) ) ]``

    so each r_ij is pulled towards logit(p_ij): near locations score above far ones.

    Args:
        logits: (L, J) reward logits r_ij for L lists of J = K+1 prompts.
        labels: (L, J) soft labels p_ij in [0, 1].
        mask: (L, J) 1 for real entries, 0 for padding (lists shorter than J); ``None`` = all real.

    Returns:
        Scalar loss.
    """
    per = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (L, J)
    if mask is None:
        return per.mean(dim=1).mean()
    m = mask.to(per.dtype)
    return ((per * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def pointwise_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Point-wise reward loss (the paper's DPO-PR ablation): true location vs the farthest candidate.

    ``L = mean_i −[ log σ(r_i,true) + log(1 − σ(r_i,far)) ] / 2`` with ``far`` the last real entry of
    each list (lists are sorted near -> far). Soft labels are ignored (hard 1 / 0).

    Args:
        logits: (L, J) reward logits, column 0 the true location.
        labels: (L, J) unused except for the shape (kept so variants share one signature).
        mask: (L, J) 1 for real entries.

    Returns:
        Scalar loss.
    """
    L, J = logits.shape
    last = (mask.sum(1).long() - 1) if mask is not None else torch.full((L,), J - 1, dtype=torch.long, device=logits.device)
    pos = logits[:, 0]
    neg = logits[torch.arange(L, device=logits.device), last]
    bce = nn.functional.binary_cross_entropy_with_logits
    return 0.5 * (bce(pos, torch.ones_like(pos)) + bce(neg, torch.zeros_like(neg)))


REWARD_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"listwise": listwise_bce, "pointwise": pointwise_bce}


def reward_loss(mode: str) -> Callable[..., torch.Tensor]:
    """The loss of ``reward.mode``; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return REWARD_LOSSES[mode]
    except KeyError:
        raise ValueError(f"unknown reward.mode {mode!r}; valid: {', '.join(REWARD_LOSSES)}") from None


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def reward_metrics(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, n_far: int) -> dict[str, float]:
    """Held-out quality of the reward scores.

    * ``ndcg``: NDCG of the reward ordering with the soft labels (Eq. 3) as graded relevance, i.e.
      against the distance rank (sklearn ``ndcg_score``, per list, averaged).
    * ``auc_true_vs_far``: ROC-AUC of the true location's score against the scores of the last
      ``n_far`` (farthest) candidates of the same lists.
    * ``auc_true_vs_near``: the same against the first ``n_far`` (nearest) candidates: can the
      reward tell the true location from one a few hundred metres away.
    * ``auc_near_vs_far``: ROC-AUC of the ``n_far`` nearest candidates' scores against the ``n_far``
      farthest ones, the true entry left out. This is the figure that compares the two
      ``reward.conditioning`` forms: an anchor-conditioned reward tells the true entry from the
      others trivially (its input contains the true prompt), so its true-vs-* AUCs say little.

    Args:
        scores: (L, J) reward logits.
        labels: (L, J) soft labels.
        mask: (L, J) bool, real entries.
        n_far: how many of the farthest candidates count as "far".
    """
    from sklearn.metrics import ndcg_score, roc_auc_score

    ndcgs = []
    pos, neg, near, near_c, far_c = [], [], [], [], []
    k = max(1, n_far)
    for s, y, m in zip(scores, labels, mask):
        n = int(m.sum())
        if n < 2:
            continue
        ndcgs.append(ndcg_score(y[None, :n], s[None, :n]))
        pos.append(s[0])
        neg.extend(s[max(1, n - k) : n].tolist())
        near.extend(s[1 : min(n, 1 + k)].tolist())
        h = (n - 1) // 2  # candidates 1..n-1: at most half of them on each side, so near and far never overlap
        near_c.extend(s[1 : 1 + min(k, h)].tolist())
        far_c.extend(s[n - min(k, h) : n].tolist() if h else [])

    def auc(a: list, b: list) -> float:
        return float(roc_auc_score([1] * len(a) + [0] * len(b), a + b)) if a and b else float("nan")

    return {
        "ndcg": float(np.mean(ndcgs)) if ndcgs else float("nan"),
        "auc_true_vs_far": auc(pos, neg),
        "auc_true_vs_near": auc(pos, near),
        "auc_near_vs_far": auc(near_c, far_c),
    }


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class ListBatch:
    """Reward lists as dense arrays.

    Attributes:
        item_ids: (L,) anchors.
        emb: (L, J, D) reference embeddings of the list prompts (0 where padded).
        labels: (L, J) soft labels.
        mask: (L, J) bool, real entries.
    """

    item_ids: np.ndarray
    emb: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


def random_lists(prompts: "pd.DataFrame", k: int, seed: int, prompts_cfg) -> "pd.DataFrame":
    """Reward lists with *uniformly random* candidates (the "w/o density-aware negatives" ablation).

    For each anchor, K other items are drawn uniformly; their locations are sorted near -> far by
    haversine distance, and the soft labels come from Eq. 3 (:func:`soft_labels`).

    Args:
        prompts: geo_prompts rows (item_id, content_text, location_text, prompt, lat, lon).
        k: K candidates per anchor (at most N-1).
        seed: sampling seed.
        prompts_cfg: ``cfg.prompts`` (how content and location combine).

    Returns:
        pandas DataFrame in the ``reward_lists`` schema.
    """
    import pandas as pd

    n = len(prompts)
    k = min(k, n - 1)
    if k < 1:
        raise ValidationError("reward lists: need at least 2 items in geo_prompts to draw random candidates")
    from lgsid.geo import haversine_km

    rng = np.random.default_rng(seed)
    lat = prompts["lat"].to_numpy(float)
    lon = prompts["lon"].to_numpy(float)
    content = prompts["content_text"].tolist()
    loc = prompts["location_text"].tolist()
    rows = []
    for i in range(n):
        cand = rng.choice(n - 1, size=k, replace=False)
        cand = cand + (cand >= i)  # skip the anchor itself
        d = haversine_km(lat[i], lon[i], lat[cand], lon[cand])  # (k,)
        order = np.argsort(d, kind="stable")
        cand, d = cand[order], d[order]
        ranks = np.arange(k + 1)
        rows.append(
            {
                "item_id": prompts["item_id"].iloc[i],
                "content_text": content[i],
                "prompts": [prompts["prompt"].iloc[i]] + [combine_prompt(content[i], loc[j], prompts_cfg) for j in cand],
                "ranks": ranks.tolist(),
                "distance_km": [0.0] + d.tolist(),
                "soft_labels": soft_labels(ranks, k).tolist(),
            }
        )
    return pd.DataFrame(rows)


def embed_lists(spark: "SparkSession", lists: "DataFrame", cfg: LGSIDConfig) -> ListBatch:
    """Embed every prompt of ``lists`` (reward_lists rows, at most ``reward.max_anchors``) with the frozen reference
    encoder via the Spark UDF, and read the vectors back through Petastorm (:func:`lgsid.train.data.petastorm_batches`)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from lgsid.embed import embed_dataframe
    from lgsid.train.data import make_converter, petastorm_batches

    flat = lists.select("item_id", "soft_labels", F.posexplode("prompts").alias("pos", "prompt"))
    flat = flat.select("item_id", "pos", "prompt", F.col("soft_labels")[F.col("pos")].alias("label"))
    converter = make_converter(embed_dataframe(flat, "prompt", cfg.encoder).select("item_id", "pos", "label", "embedding"))
    try:
        rows: list[dict] = []
        with petastorm_batches(converter, 4096, lambda batch: batch, seed=cfg.reward.seed) as loader:
            for batch in loader:
                rows.extend(batch)
    finally:
        converter.delete()
    pdf = pd.DataFrame(rows, columns=["item_id", "pos", "label", "embedding"])
    if pdf.empty:
        raise ValidationError("reward_lists is empty: nothing to train the reward model on; run `lgsid negatives` first")
    if pdf["label"].isna().any():
        bad = pdf.loc[pdf["label"].isna(), "item_id"].head(3).tolist()
        raise ValidationError(f"reward_lists: soft_labels shorter than prompts for item_id(s) {bad}")
    ids = np.array(sorted(pdf["item_id"].unique()))
    row = {v: i for i, v in enumerate(ids)}
    J = int(pdf["pos"].max()) + 1
    D = len(pdf["embedding"].iloc[0])
    emb = np.zeros((len(ids), J, D), dtype=np.float32)
    labels = np.zeros((len(ids), J), dtype=np.float32)
    mask = np.zeros((len(ids), J), dtype=bool)
    r = pdf["item_id"].map(row).to_numpy()
    p = pdf["pos"].to_numpy()
    emb[r, p] = np.stack(pdf["embedding"].to_numpy())
    labels[r, p] = pdf["label"].to_numpy(np.float32)
    mask[r, p] = True
    return ListBatch(ids, emb, labels, mask)


# --------------------------------------------------------------------------------------------
# Training, saving, loading
# --------------------------------------------------------------------------------------------


def train_reward_model(data: ListBatch, cfg: LGSIDConfig, log_fn: Callable[[dict, int], None] | None = None) -> tuple[RewardMLP, dict]:
    """Fit the reward MLP on train anchors; early-stop and evaluate NDCG / AUC on held-out anchors.

    With ``reward.conditioning=anchor`` every entry of a list is scored given the list's entry 0
    (the anchor's true prompt, ``data.emb[:, :1]``) through :func:`anchor_features`; the lists,
    labels and loss are the same as for Eq. 2 (the true entry included, label 1).

    Training runs for at most ``reward.epochs`` epochs and stops once the held-out loss has not
    improved for ``reward.patience`` epochs (0 = never stop early); the weights of the best
    held-out epoch are restored.

    Returns:
        (model, metrics) with train loss, held-out loss (both at the best epoch), ``best_epoch``,
        ``epochs_run``, ``val_ndcg``, ``val_auc_true_vs_far``, ``val_auc_true_vs_near``,
        ``val_auc_near_vs_far`` (:func:`reward_metrics`) and the same on the train split.
    """
    from tqdm.auto import tqdm

    rc = cfg.reward
    torch.manual_seed(rc.seed)
    rng = np.random.default_rng(rc.seed)
    L = len(data.item_ids)
    if L < 2:
        raise ValidationError(f"reward model needs at least 2 anchors (train + held out), got {L}")
    perm = rng.permutation(L)
    n_val = min(L - 1, max(1, int(round(rc.holdout_share * L))))
    val, tr = perm[:n_val], perm[n_val:]
    emb, lab, msk = (torch.from_numpy(a) for a in (data.emb, data.labels, data.mask.astype(np.float32)))
    model = RewardMLP(data.emb.shape[-1], rc.hidden_sizes, rc.conditioning)
    score = (lambda e: model(e, e[:, :1])) if rc.conditioning == "anchor" else model  # (L, J, D) -> (L, J)
    opt = torch.optim.Adam(model.parameters(), lr=rc.lr)
    loss_fn = reward_loss(rc.mode)
    history = []
    bar = tqdm(range(rc.epochs), desc=f"reward ({rc.mode}, {rc.conditioning})", unit="epoch")
    step = 0
    best = (float("inf"), -1, None)  # (held-out loss, epoch, state dict)
    for ep in bar:
        model.train()
        order = tr[rng.permutation(len(tr))]
        tot = 0.0
        for s in range(0, len(order), rc.batch_size):
            b = torch.from_numpy(order[s : s + rc.batch_size])
            loss = loss_fn(score(emb[b]), lab[b], msk[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
            step += 1
        model.eval()
        with torch.no_grad():
            vloss = float(loss_fn(score(emb[val]), lab[val], msk[val]))
        rec = {"reward_train_loss": tot / len(tr), "reward_val_loss": vloss}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['reward_train_loss']:.4f}", val=f"{vloss:.4f}")
        if log_fn:
            log_fn(rec, ep)
        if vloss < best[0]:
            best = (vloss, ep, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif rc.patience and ep - best[1] >= rc.patience:
            break
    bar.close()
    model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        s_all = score(emb).numpy()
    n_far = max(1, cfg.negatives.n_far)
    mv = reward_metrics(s_all[val], data.labels[val], data.mask[val], n_far)
    mt = reward_metrics(s_all[tr], data.labels[tr], data.mask[tr], n_far)
    metrics = {
        "reward_train_loss": history[best[1]]["reward_train_loss"],
        "reward_val_loss": best[0],
        "best_epoch": int(best[1]),
        "epochs_run": len(history),
        "val_ndcg": mv["ndcg"],
        "val_auc_true_vs_far": mv["auc_true_vs_far"],
        "val_auc_true_vs_near": mv["auc_true_vs_near"],
        "val_auc_near_vs_far": mv["auc_near_vs_far"],
        "train_ndcg": mt["ndcg"],
        "train_auc_true_vs_far": mt["auc_true_vs_far"],
        "train_auc_true_vs_near": mt["auc_true_vs_near"],
        "train_auc_near_vs_far": mt["auc_near_vs_far"],
        "n_train_lists": int(len(tr)),
        "n_val_lists": int(len(val)),
    }
    return model, metrics


def save_reward_model(model: RewardMLP, path: str, meta: dict | None = None) -> None:
    """Write ``reward_model.pt`` (state dict) and ``reward_model.json`` (dim, hidden sizes, conditioning, meta) to ``path``."""
    os.makedirs(path, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(path, "reward_model.pt"))
    with open(os.path.join(path, "reward_model.json"), "w") as f:
        json.dump({**(meta or {}), "dim": model.dim, "hidden_sizes": model.hidden_sizes, "conditioning": model.conditioning}, f, indent=2)


def load_reward_model(path: str) -> RewardMLP:
    """Load a frozen reward model saved by :func:`save_reward_model` (all parameters requires_grad=False).

    The model's ``meta`` attribute holds ``reward_model.json``; a file without ``conditioning``
    (written before the option existed) is Eq. 2 (``"none"``).
    """
    meta_p, w_p = os.path.join(path, "reward_model.json"), os.path.join(path, "reward_model.pt")
    if not (os.path.isfile(meta_p) and os.path.isfile(w_p)):
        raise ModelError(f"no reward model at {path} (expected reward_model.json + reward_model.pt); run `lgsid reward` first")
    with open(meta_p) as f:
        meta = json.load(f)
    cond = meta.get("conditioning", "none")
    if cond not in REWARD_CONDITIONINGS:
        raise ModelError(f"{meta_p}: conditioning {cond!r} is not one of {', '.join(REWARD_CONDITIONINGS)}")
    model = RewardMLP(int(meta["dim"]), list(meta["hidden_sizes"]), cond)
    try:
        model.load_state_dict(torch.load(w_p, map_location="cpu", weights_only=True))
    except RuntimeError as e:
        raise ModelError(f"{w_p}: weights do not fit the model described by {meta_p} (dim {meta['dim']}, hidden {meta['hidden_sizes']}, conditioning {cond}): {str(e).splitlines()[0]}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.meta = meta
    return model


REWARD_ARTIFACT = "reward_model"


def input_fingerprint(spark: "SparkSession", cfg: LGSIDConfig) -> str:
    """Fingerprint of what the reward model depends on (:mod:`lgsid.fingerprint`).

    The config sections ``reward``, ``encoder`` (the frozen reference embeds the lists),
    ``negatives``, ``prompts`` and ``gdpo.use_density_negatives``, and the Delta version of the
    input table (``reward_lists``, or ``geo_prompts`` for random lists).
    """
    from lgsid.fingerprint import fingerprint
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    d = cfg.to_dict()
    table = "reward_lists" if cfg.gdpo.use_density_negatives else "geo_prompts"
    conf = {k: d[k] for k in ("reward", "encoder", "negatives", "prompts")} | {"gdpo.use_density_negatives": cfg.gdpo.use_density_negatives}
    return fingerprint(conf, {table: store.version(table)})


def find_reward_run(spark: "SparkSession", cfg: LGSIDConfig):
    """The reward run trained on the current inputs and config (same :func:`input_fingerprint`).

    Raises:
        ModelError: none exists (``lgsid reward`` has not run since its inputs or config changed).
    """
    from lgsid.tracking import find_run

    fp = input_fingerprint(spark, cfg)
    run = find_run(cfg, "reward", fp)
    if run is None:
        raise ModelError(
            f"no reward model for the current reward_lists and config (input fingerprint {fp}) in MLflow experiment "
            f"{cfg.mlflow.experiment!r}; run `lgsid reward` first"
        )
    return run


def load_logged_reward_model(run_id: str, dst: str | None = None) -> RewardMLP:
    """The frozen reward model logged by run ``run_id`` (artifact ``runs:/<run_id>/reward_model``).

    Args:
        run_id: The ``reward`` run.
        dst: Directory to download into; the files stay in ``<dst>/reward_model`` (e.g. to log
            them again). ``None``: a temporary directory, removed after loading.

    Returns:
        The frozen model; its ``meta`` is the logged ``reward_model.json`` (incl. ``conditioning``).
    """
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{REWARD_ARTIFACT}", dst_path=dst or tmp)
        return load_reward_model(local)


#: Random lists (``gdpo.use_density_negatives`` off) draw their candidates from at most this many items
#: (a seeded hash sample of ``geo_prompts``, or all of it when smaller): a uniform draw from a uniform
#: sample is a uniform draw, and the driver never holds the catalogue.
RANDOM_LIST_POOL = 50_000


def load_lists(spark: "SparkSession", cfg: LGSIDConfig) -> "DataFrame":
    """The training lists: ``reward_lists`` (density-aware), or random lists when ``gdpo.use_density_negatives`` is off.

    At most ``reward.max_anchors`` anchors are kept (a seeded hash sample, so reruns pick the same).
    Random lists are drawn on the driver from at most :data:`RANDOM_LIST_POOL` items (``max_anchors`` when larger).
    """
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    if cfg.gdpo.use_density_negatives:
        lists = store.read("reward_lists").select("item_id", "prompts", "soft_labels")
    else:
        gp = store.read("geo_prompts").select("item_id", "content_text", "location_text", "prompt", "lat", "lon")
        pool = max(RANDOM_LIST_POOL, cfg.reward.max_anchors)
        if cfg.reward.max_anchors and gp.count() > pool:  # the anchors below are the pool's first max_anchors by the same hash
            gp = gp.orderBy(F.xxhash64(F.col("item_id"), F.lit(cfg.reward.seed)), "item_id").limit(pool)
        prompts = gp.toPandas().sort_values("item_id", kind="stable").reset_index(drop=True)
        k = max(2, cfg.negatives.k)
        lists = spark.createDataFrame(random_lists(prompts, k, cfg.reward.seed, cfg.prompts)[["item_id", "prompts", "soft_labels"]])
    if cfg.reward.max_anchors:
        key = F.xxhash64(F.col("item_id"), F.lit(cfg.reward.seed))
        lists = lists.orderBy(key).limit(cfg.reward.max_anchors)
    return lists


def plot_reward_history(history: list[dict], path: str) -> None:
    """PNG of train / held-out loss per epoch."""
    from lgsid.plots import plot_curves

    plot_curves(history, ("reward_train_loss", "reward_val_loss"), "epoch", path, figsize=(5, 3.2))
