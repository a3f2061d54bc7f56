"""The per-case v* loss (the paper's section 3; docs/editing.md "v*"), written without host synchronisation.

    loss = mean over templates of the per-token NLL of target_new
           + kl_factor * KL at the KL prompt's fact token (`kl_direction`: KL(current || original) by default)
           + preserve_factor * mean over preservation prompts of the KL at each prompt's last token

(weight decay is added by the caller, editing.values). Every data-dependent index (which positions predict a
target token, which rows are KL rows) is computed once per batch layout by `LossIndex.of`, so computing the loss
launches only fixed-shape kernels and never waits on the GPU: the same function serves the eager steps and the
steps captured as a CUDA graph (editing.accel.graphs), where a host synchronisation is not allowed.

The loss reads the logits of few positions per row (the target predictions, the KL position), so the output
projection is applied to those positions only (`LossIndex.read`, models.hooks.gather_positions): logits are
(R, K, V) with K the most positions one row reads, instead of (R, T, V). With a 49k-262k-token vocabulary the
projection of every position was the largest single product of a forward over templated rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from goldenlayers.editing.batch import KL_ROW, Rows
from goldenlayers.editing.hparams import EditHParams


@dataclass
class LossIndex:
    """For one Rows layout: read (R, K): the positions whose logits the loss reads, per row (the target
    predictions, or the `kl_at` position; padded with the row's first one), i.e. the positions to project to
    the vocabulary; pred_row, pred_slot, pred_next (N,): every position that predicts a target token, as its
    row and its slot in `read`, and that token; n_pred (R,): the number of such positions per row (at least 1);
    tmpl_rows (R_t,): the templated rows; kl_rows, kl_slot (R_k,): the KL and preservation rows and the slot of
    their `kl_at` position; kl_weight (R_k,): kl_factor for KL rows, preserve_factor / #preserve prompts for
    preservation rows."""

    read: torch.Tensor
    pred_row: torch.Tensor
    pred_slot: torch.Tensor
    pred_next: torch.Tensor
    n_pred: torch.Tensor
    tmpl_rows: torch.Tensor
    kl_rows: torch.Tensor
    kl_slot: torch.Tensor
    kl_weight: torch.Tensor

    @classmethod
    def of(cls, r: Rows, hp: EditHParams) -> LossIndex:
        pm = r.predict_mask
        pred_row, pred_pos = pm.nonzero(as_tuple=True)
        kl_rows = (r.template < 0).nonzero()[:, 0]
        kl_pos = r.kl_at[kl_rows]
        needed = pm.clone()
        needed[kl_rows, kl_pos] = True
        R, T = needed.shape
        pos = torch.arange(T, device=needed.device).expand(R, T)
        order = torch.where(needed, pos, pos + T).argsort(dim=1)  # (R, T): each row's needed positions first
        count = needed.sum(1)
        K = max(1, int(count.max()))
        read = torch.where(torch.arange(K, device=pos.device)[None] < count[:, None], order[:, :K], order[:, :1])
        slot = torch.full((R, T), -1, dtype=torch.long, device=pos.device)
        slot.scatter_(1, order, torch.arange(T, device=pos.device).expand(R, T).contiguous())
        n_preserve = max(1, len(hp.preserve_prompts))
        kl_weight = torch.where(r.template[kl_rows] == KL_ROW, hp.kl_factor, hp.preserve_factor / n_preserve)
        return cls(read, pred_row, slot[pred_row, pred_pos], r.next_ids[pred_row, pred_pos], pm.sum(1).clamp(min=1),
                   (r.template >= 0).nonzero()[:, 0], kl_rows, slot[kl_rows, kl_pos], kl_weight.float())


def case_losses(logits: torch.Tensor, r: Rows, ix: LossIndex, n: int, n_templates: int,
                init_kl: torch.Tensor | None, hp: EditHParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-case NLL + KL terms -> (n,), and the log-probs (R_k, V) of the KL and preservation rows at their
    positions, from logits (R, K, V) of the rows `r` at the positions `ix.read`. init_kl: those log-probs at the
    first step for the same rows (None at the first step: no KL term)."""
    dev = logits.device
    logp = torch.log_softmax(logits[ix.pred_row, ix.pred_slot].float(), dim=-1)  # (N, V)
    tok_nll = -logp.gather(1, ix.pred_next[:, None]).squeeze(1)
    f32 = dict(device=dev, dtype=torch.float32)  # whatever torch's default dtype is
    per_row = torch.zeros(len(r.case), **f32).index_add_(0, ix.pred_row, tok_nll) / ix.n_pred
    nll = torch.zeros(n, **f32).index_add_(0, r.case[ix.tmpl_rows], per_row[ix.tmpl_rows]) / n_templates
    kl_logp = torch.log_softmax(logits[ix.kl_rows, ix.kl_slot].float(), dim=-1)  # (R_k, V)
    if init_kl is None or (hp.kl_factor == 0 and not hp.preserve_prompts):
        return nll, kl_logp
    ref = init_kl
    if hp.kl_direction == "current||original":
        kl = (kl_logp.exp() * (kl_logp - ref)).sum(-1)
    else:
        kl = (ref.exp() * (ref - kl_logp)).sum(-1)
    return nll + torch.zeros(n, **f32).index_add_(0, r.case[ix.kl_rows], ix.kl_weight * kl), kl_logp
