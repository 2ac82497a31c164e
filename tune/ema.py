"""Exponential moving average of a model's weights (`optim.ema_decay`; 0 = off).

`EMA(model, decay)` holds a copy of the bare model (`ema.model`) whose floating-point parameters and buffers
follow the trained ones after every optimiser step: w_ema <- d * w_ema + (1 - d) * w with
d = min(decay, (1 + n) / (10 + n)) at the n-th update (n = 1, 2, ...), so the first steps are not dominated by
the random initialisation; integer buffers are copied. The trainer validates and saves `model.pt` from
`ema.model`; the raw weights and the update count go into the resume state (`state_dict`), so a resumed run
continues both exactly.
"""
from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def rate(self) -> float:
        """The decay used at the next update."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.rate()
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach().to(v.dtype), alpha=1.0 - d)
            else:
                v.copy_(src[k])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict, weights: dict) -> None:
        """Continue from a checkpoint: its model.pt (the EMA weights) and the counter from its state."""
        self.model.load_state_dict(weights)
        self.updates = int(state.get("updates", 0))
