"""TCN: masked dilated residual temporal convolutions (one MS-TCN stage).

1x1 input projection -> `tcn_layers` residual layers with dilation 1, 2, 4, ... (receptive field
2^(L+1) - 1 frames with kernel 3) -> per-frame linear. Padded frames are zeroed before every conv.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import DilatedResidual, masked


@dataclass
class TCNConfig:
    hidden: int = 64
    tcn_layers: int = 6
    dropout: float = 0.1


class TCN(nn.Module):
    def __init__(self, cfg: TCNConfig, in_features: int, num_classes: int = 38):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(in_features, cfg.hidden)  # frame-wise, same as a 1x1 conv
        self.layers = nn.ModuleList(DilatedResidual(cfg.hidden, 2 ** i, cfg.dropout)
                                    for i in range(cfg.tcn_layers))
        self.head = nn.Linear(cfg.hidden, num_classes)

    def receptive_field(self) -> int:
        return 2 ** (self.cfg.tcn_layers + 1) - 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = masked(self.inp(x), mask)  # (B, T, hidden)
        for layer in self.layers:
            h = layer(h, mask)  # (B, T, hidden)
        return self.head(h)  # (B, T, C)
