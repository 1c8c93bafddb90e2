"""The G-DPO objective — Eq. 6-8, arXiv 2511.14221 — as pure functions, and its value on one batch."""

from __future__ import annotations

import torch
from torch import nn

from lgsid.config import GDPOConfig
from lgsid.train.runtime import autocast


def gdpo_align_loss(r_pol_pos: torch.Tensor, r_pol_neg: torch.Tensor, r_ref_pos: torch.Tensor, r_ref_neg: torch.Tensor, beta: float) -> torch.Tensor:
    """The G-DPO alignment loss — Eq. 6, arXiv 2511.14221.

    ``L_align = −E log σ( β [ (R(E_θ(+)) − R(E_θ(−))) − (R(E_ref(+)) − R(E_ref(−))) ] )``

    R is the frozen reward model; the policy is rewarded for widening the chosen-vs-rejected reward
    margin beyond the reference's margin. With an anchor-conditioned reward
    (``reward.conditioning=anchor``) every R here is ``R(· | E_ref(true))``; see :func:`gdpo_batch_loss`.

    Args:
        r_pol_pos: (B,) R of the policy embedding of the chosen prompt.
        r_pol_neg: (B,) R of the policy embedding of the rejected prompt.
        r_ref_pos: (B,) R of the reference embedding of the chosen prompt.
        r_ref_neg: (B,) same for the rejected prompt.
        beta: β (paper default 0.9).

    Returns:
        Scalar, mean over the batch.
    """
    margin = (r_pol_pos - r_pol_neg) - (r_ref_pos - r_ref_neg)  # (B,)
    return -nn.functional.logsigmoid(beta * margin).mean()


def similarity_loss(e_pol: torch.Tensor, e_ref: torch.Tensor) -> torch.Tensor:
    """In-batch semantic-preservation term L_sim — Eq. 7, arXiv 2511.14221.

    ``L_sim = mean_i [ ‖E_θ(i) − E_ref(i)‖² − (1/(B−1)) Σ_{j≠i} ‖E_θ(i) − E_ref(j)‖² ]``

    on the items' true prompts: each policy embedding stays near its own reference embedding and
    away from the other items' references. The second term is unbounded for free vectors; with
    ``encoder.normalize`` (unit vectors) every distance is ≤ 4, so the loss is bounded.

    Args:
        e_pol: (B, D) policy embeddings, B ≥ 2.
        e_ref: (B, D) reference embeddings of the same items (no gradient needed).

    Returns:
        Scalar.
    """
    B = e_pol.shape[0]
    if B < 2:
        raise ValueError(f"L_sim is in-batch and needs at least 2 items, got {B}")
    d2 = torch.cdist(e_pol.float(), e_ref.float()).pow(2)  # (B, B): ‖E_θ(i) − E_ref(j)‖²
    pos = d2.diagonal()  # (B,)
    neg = (d2.sum(1) - pos) / (B - 1)  # (B,)
    return (pos - neg).mean()


def gdpo_objective(l_align: torch.Tensor, l_sim: torch.Tensor, lambda_sim: float, use_sim: bool = True) -> torch.Tensor:
    """Total G-DPO objective — Eq. 8, arXiv 2511.14221.

    ``L = L_align + λ · L_sim`` (``use_sim=False`` drops L_sim: the "w/o L_sim" ablation).
    """
    return l_align + lambda_sim * l_sim if use_sim else l_align


def gdpo_batch_loss(policy, encoder, reward: nn.Module, batch: dict, g: GDPOConfig, device: str) -> tuple[torch.Tensor, dict]:
    """Eq. 6-8 on one collated batch (rows ordered chosen[0:B], rejected[B:2B], true[2B:3B]).

    With an Eq. 2 reward (``reward.conditioning == "none"``) the four rewards of Eq. 6 are
    ``R(E_θ(+)), R(E_θ(−)), R(E_ref(+)), R(E_ref(−))``. With an anchor-conditioned reward
    (``"anchor"``, :func:`lgsid.reward.anchor_features`) each is conditioned on the *reference*
    embedding of the example's true prompt: ``R(E_θ(±) | E_ref(true))`` for the policy and
    ``R(E_ref(±) | E_ref(true))`` for the reference margin. The condition is the frozen reference,
    never the policy's own E_θ(true): otherwise the policy could raise its margin by moving the
    true prompt's embedding (the condition) instead of the chosen and rejected prompts, and the
    reward would be scored off the inputs it was trained on. The true rows are then embedded by
    the reference even when ``use_sim`` is off. At step 0 (policy = reference) the margins agree
    in both forms, so the loss is ``ln 2 + λ·L_sim(ref)``.

    Args:
        policy: Module whose forward gives policy embeddings (the encoder, or its DDP wrapper).
        encoder: The :class:`lgsid.encoder.Encoder` (its ``reference()`` context gives E_ref).
        reward: Frozen reward MLP (:class:`lgsid.reward.RewardMLP`; its ``conditioning``
            attribute, ``"none"`` when absent, picks the form).
        batch: Output of :func:`lgsid.gdpo.examples.make_collate`: token tensors (3B, T) and ``n`` = B.
        g: G-DPO config (β, λ, use_sim).
        device: ``cpu`` or ``cuda`` (bf16 autocast of the encoder on CUDA, and on CPU when ``encoder.cpu_bf16``;
            the reward MLP and the losses in float32).

    Returns:
        (total loss, {"loss", "l_align", "l_sim", "reward_margin", "ref_margin"} as detached scalars).
    """
    B = int(batch["n"])
    anchored = getattr(reward, "conditioning", "none") == "anchor"
    rows = 3 * B if g.use_sim else 2 * B  # policy rows
    ref_rows = 3 * B if g.use_sim or anchored else 2 * B  # reference rows (the true rows are the condition)
    tok = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    with autocast(device, encoder.cpu_bf16):  # the encoder in bf16 on CUDA (and CPU per encoder.cpu_bf16); its pooled output is float32
        e = policy(**{k: v[:rows] for k, v in tok.items()})  # (rows, D)
        with torch.no_grad(), encoder.reference():
            e_ref = encoder(**{k: v[:ref_rows] for k, v in tok.items()})  # (ref_rows, D)
    # The reward MLP runs outside autocast, in float32: Eq. 6 takes a difference of reward margins,
    # which bf16 (8 significant bits) would round away. The MLP is tiny, so this costs nothing.
    cond = (e_ref[2 * B : 3 * B].float().repeat(2, 1),) if anchored else ()  # (2B, D): E_ref(true) for chosen, then rejected
    r = reward(e[: 2 * B].float(), *cond)  # (2B,)
    with torch.no_grad():
        r_ref = reward(e_ref[: 2 * B].float(), *cond)  # (2B,)
    l_align = gdpo_align_loss(r[:B], r[B : 2 * B], r_ref[:B], r_ref[B : 2 * B], g.beta)
    l_sim = similarity_loss(e[2 * B :], e_ref[2 * B :]) if g.use_sim else torch.zeros((), device=l_align.device)
    loss = gdpo_objective(l_align, l_sim, g.lambda_sim, g.use_sim)
    parts = {
        "loss": loss.detach(),
        "l_align": l_align.detach(),
        "l_sim": l_sim.detach(),
        "reward_margin": (r[:B] - r[B : 2 * B]).mean().detach(),
        "ref_margin": (r_ref[:B] - r_ref[B : 2 * B]).mean().detach(),
    }
    return loss, parts
