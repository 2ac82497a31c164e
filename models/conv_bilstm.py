"""Conv1DBiLSTM: the seed's architecture (V5/V6). Conv1D stack -> bidirectional LSTM -> per-frame linear.

Padding safety: convs zero padded frames first (models.common.masked); the LSTM runs on
`pack_padded_sequence`, so the backward direction of each sequence starts at its own last real frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.common import ConvBlock, lengths_of, masked


@dataclass
class ConvBiLSTMConfig:
    hidden: int = 64
    conv_layers: int = 2
    kernel_size: int = 5
    rnn_layers: int = 1
    dropout: float = 0.1


def run_packed(rnn: nn.RNNBase, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A batch_first (bi)RNN over the real frames only: (B, T, Cin) -> (B, T, Cout), padded frames = 0."""
    T = h.shape[1]
    packed = pack_padded_sequence(h, lengths_of(mask), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H)
    return masked(out, mask)


class ConvBiLSTM(nn.Module):
    def __init__(self, cfg: ConvBiLSTMConfig, in_features: int, num_classes: int = 38):
        super().__init__()
        self.cfg = cfg
        chans = [in_features] + [cfg.hidden] * cfg.conv_layers
        self.convs = nn.ModuleList(ConvBlock(a, b, cfg.kernel_size, cfg.dropout)
                                   for a, b in zip(chans, chans[1:]))
        self.lstm = nn.LSTM(chans[-1], cfg.hidden, num_layers=cfg.rnn_layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x  # (B, T, F)
        for conv in self.convs:
            h = conv(h, mask)  # (B, T, hidden)
        h = run_packed(self.lstm, h, mask)  # (B, T, 2 * hidden)
        return self.head(self.drop(h))  # (B, T, C)
