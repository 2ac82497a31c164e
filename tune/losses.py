"""The training loss and LR schedule: class-weighted cross-entropy over each pair's whitelisted classes
(`masked_loss`, `hard_targets`) and linear warm-up + cosine decay (`lr_lambda`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F_


def masked_loss(logits: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor, weight: torch.Tensor,
                smoothing: float = 0.0) -> torch.Tensor:
    """Class-weighted cross-entropy over each pair's whitelisted classes.

    logits (B, T, C); target (B, T) int with IGNORE, or soft targets (B, T, C) with per-frame weights
    passed as `weight` (B, T); allowed (B, C) bool; weight: class weights (C,) for hard targets.
    Non-allowed classes get no probability mass (their logits are pushed to -1e4 before the softmax) and
    label smoothing spreads only over allowed classes. Mean weighted by the target classes' weights.
    """
    allowed3 = allowed[:, None, :]  # (B, 1, C)
    logits = logits.float().masked_fill(~allowed3, -1e4)
    logp = F_.log_softmax(logits, dim=-1).masked_fill(~allowed3, 0.0)  # (B, T, C)
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8):
        q, w = hard_targets(target, allowed, weight, smoothing)
    else:
        q, w = target, weight
    per_frame = -(q * logp).sum(-1)  # (B, T)
    return (per_frame * w).sum() / w.sum().clamp(min=1e-8)


def hard_targets(target: torch.Tensor, allowed: torch.Tensor, weight: torch.Tensor, smoothing: float):
    """Int labels -> (soft targets (B, T, C), frame weights (B, T)); IGNORE frames get weight 0.
    weight: class weights (C,), or per window (B, C) (per-lab class weights)."""
    valid = target >= 0
    t = target.clamp(min=0).long()
    q = F_.one_hot(t, weight.shape[-1]).float()  # (B, T, C)
    if smoothing > 0:
        a = allowed[:, None, :].float()
        q = (1 - smoothing) * q + smoothing * a / a.sum(-1, keepdim=True)
    w = (weight[t] if weight.dim() == 1 else weight.gather(1, t)) * valid.float()  # (B, T)
    return q, w


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    """Multiplier of the peak LR at a step: linear warm-up from ~0, then cosine down to `min_ratio`."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f
