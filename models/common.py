"""Building blocks shared by the registered models: masked convolutions and the input-standardising wrapper.

Masking rule used everywhere: a padded frame (mask False) is set to zero before every temporal convolution,
so a real frame near the end of a sequence sees exactly the zeros that 'same' padding would give the
unpadded sequence. Per-frame LayerNorm (not BatchNorm/GroupNorm) keeps frames and batch items independent.
"""
from __future__ import annotations

import torch
from torch import nn


def masked(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero padded frames. h: (B, T, C), mask: (B, T) bool."""
    return h * mask.unsqueeze(-1).to(h.dtype)


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Real-frame count per sequence (B,) on CPU, as pack_padded_sequence wants. Masks are prefixes."""
    return mask.sum(dim=1).clamp(min=1).to("cpu", torch.int64)


class ConvBlock(nn.Module):
    """Masked Conv1D -> LayerNorm -> GELU -> dropout, channels-last in and out:
    (B, T, Cin) -> (B, T, Cout)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dropout: float, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=dilation * (kernel_size // 2),
                              dilation=dilation)
        self.norm = nn.LayerNorm(c_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = masked(h, mask).transpose(1, 2)  # (B, Cin, T)
        h = self.conv(h).transpose(1, 2)  # (B, T, Cout)
        return masked(self.drop(nn.functional.gelu(self.norm(h))), mask)


class DilatedResidual(nn.Module):
    """MS-TCN layer: masked dilated conv -> ReLU -> 1x1 conv -> dropout, plus the residual. (B, T, C)."""

    def __init__(self, channels: int, dilation: int, dropout: float, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                              dilation=dilation)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = masked(h, mask).transpose(1, 2)  # (B, C, T)
        z = self.drop(self.proj(torch.relu(self.conv(z)))).transpose(1, 2)  # (B, T, C)
        return masked(h + z, mask)


class FrameClassifier(nn.Module):
    """Standardise raw features ((x - mean) / std, NaN -> 0), then run the backbone.

    The mean/std buffers are filled by the trainer from training frames and travel in `model.pt`, so
    inference needs only the raw cached features. forward(x (B, T, F), mask (B, T) bool, allowed (B, C) bool
    or None, lab (B,) or None) -> (B, T, C); `allowed` is appended to every frame when `condition_actions`, a
    learned vector of the lab when `lab_embedding`, a learned per-lab offset is added to the logits when
    `lab_bias` (the lab's own view of each action's prior), and `lab_film` scales and shifts every
    standardised feature per lab (x * (1 + g_lab) + b_lab). Both start at zero: the pooled model.
    """

    def __init__(self, backbone: nn.Module, in_features: int, condition_actions: bool = False,
                 lab_embedding: int = 0, labs: list | None = None, lab_dropout: float = 0.0,
                 lab_bias: int = 0, lab_film: bool = False):
        super().__init__()
        self.backbone = backbone
        self.condition_actions = condition_actions
        self.labs = [str(x) for x in (labs or [])]
        self.lab_dropout = lab_dropout
        # row 0: the learned "unknown lab" vector (unseen labs at test time, lab_dropout in training)
        self.lab_emb = nn.Embedding(len(self.labs) + 1, lab_embedding) if lab_embedding else None
        # lab_bias = class count C: per-lab logit offsets (labs + 1, C), zero at init (row 0 = unknown lab)
        self.lab_bias = nn.Parameter(torch.zeros(len(self.labs) + 1, lab_bias)) if lab_bias else None
        # lab_film: per-lab scale and shift of every standardised input feature, (labs + 1, 2F), zero at init
        self.lab_film = nn.Parameter(torch.zeros(len(self.labs) + 1, 2 * in_features)) if lab_film else None
        self.register_buffer("x_mean", torch.zeros(in_features))
        self.register_buffer("x_std", torch.ones(in_features))

    def set_normalization(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        self.x_mean.copy_(torch.nan_to_num(mean, nan=0.0))
        self.x_std.copy_(torch.where(torch.isfinite(std) & (std > 1e-6), std, torch.ones_like(std)))

    @property
    def uses_lab(self) -> bool:
        """Whether forward reads `lab` (a lab embedding, a per-lab logit bias or a per-lab input FiLM)."""
        return self.lab_emb is not None or self.lab_bias is not None or self.lab_film is not None

    def lab_index(self, labs) -> torch.Tensor:
        """Lab names -> embedding rows (B,) int64: position in `labs` + 1, 0 for a lab never trained on."""
        pos = {name: i + 1 for i, name in enumerate(self.labs)}
        return torch.tensor([pos.get(str(lab), 0) for lab in labs], dtype=torch.int64)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, allowed: torch.Tensor | None = None,
                lab: torch.Tensor | None = None) -> torch.Tensor:
        """allowed (B, C) bool: the pair's candidate actions; used (and required) with condition_actions.
        lab (B,) int64 rows from `lab_index` (None = unknown lab); used with lab_embedding, lab_bias and
        lab_film."""
        x = torch.nan_to_num((x - self.x_mean) / self.x_std, nan=0.0, posinf=0.0, neginf=0.0)
        extra = []
        if self.condition_actions:
            if allowed is None:
                raise ValueError("this model is conditioned on the candidate actions: pass `allowed` (B, C)")
            extra.append(allowed[:, None, :].to(x.dtype).expand(-1, x.shape[1], -1))
        if self.uses_lab:
            if lab is None:
                lab = torch.zeros(x.shape[0], dtype=torch.int64)
            lab = lab.to(x.device)
            if self.training and self.lab_dropout > 0:  # one draw per window, shared by all per-lab parts
                lab = torch.where(torch.rand(lab.shape, device=x.device) < self.lab_dropout, 0, lab)
        if self.lab_film is not None:
            scale, shift = self.lab_film[lab][:, None, :].to(x.dtype).chunk(2, dim=-1)
            x = x * (1.0 + scale) + shift
        if self.lab_emb is not None:
            extra.append(self.lab_emb(lab)[:, None, :].to(x.dtype).expand(-1, x.shape[1], -1))
        if extra:
            x = torch.cat([x, *extra], dim=-1)
        logits = self.backbone(masked(x, mask), mask)
        if self.lab_bias is not None:
            logits = logits + self.lab_bias[lab][:, None, :].to(logits.dtype)
        return logits
