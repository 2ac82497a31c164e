"""Hybrid: Conv1D stack -> dilated TCN blocks -> a sequence stage (BiGRU, BiLSTM or self-attention) -> linear.

Close to the 2nd-place family (multi-scale convs + Bi-GRU/Transformer). The attention stage uses a key
padding mask, so padded frames are never attended to; the recurrent stages run packed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import ConvBlock, DilatedResidual, masked
from models.conv_bilstm import run_packed


@dataclass
class HybridConfig:
    hidden: int = 64
    conv_layers: int = 2
    kernel_size: int = 5
    tcn_layers: int = 6
    rnn_layers: int = 1
    stage: str = "gru"
    heads: int = 4
    dropout: float = 0.1


class Hybrid(nn.Module):
    def __init__(self, cfg: HybridConfig, in_features: int, num_classes: int = 38):
        super().__init__()
        self.cfg = cfg
        chans = [in_features] + [cfg.hidden] * max(cfg.conv_layers, 1)
        self.convs = nn.ModuleList(ConvBlock(a, b, cfg.kernel_size, cfg.dropout)
                                   for a, b in zip(chans, chans[1:]))
        self.tcn = nn.ModuleList(DilatedResidual(cfg.hidden, 2 ** i, cfg.dropout)
                                 for i in range(cfg.tcn_layers))
        if cfg.stage == "attention":
            self.attn = nn.MultiheadAttention(cfg.hidden, cfg.heads, dropout=cfg.dropout, batch_first=True)
            self.norm = nn.LayerNorm(cfg.hidden)
            out = cfg.hidden
        else:
            rnn = nn.GRU if cfg.stage == "gru" else nn.LSTM
            self.rnn = rnn(cfg.hidden, cfg.hidden, num_layers=cfg.rnn_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
            out = 2 * cfg.hidden
        self.head = nn.Linear(out, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x  # (B, T, F)
        for conv in self.convs:
            h = conv(h, mask)  # (B, T, hidden)
        for layer in self.tcn:
            h = layer(h, mask)  # (B, T, hidden)
        if self.cfg.stage == "attention":
            a, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)  # (B, T, hidden)
            h = masked(self.norm(h + a), mask)
        else:
            h = run_packed(self.rnn, h, mask)  # (B, T, 2 * hidden)
        return self.head(h)  # (B, T, C)
