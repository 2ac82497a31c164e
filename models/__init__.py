"""Pure nn.Modules: (B, T, F) features + padding mask -> (B, T, C) logits. No files, no Ray.

Registry (`build_model(cfg, in_features, num_classes=38)`):
    conv_bilstm  Conv1D stack -> bidirectional LSTM -> per-frame linear (the seed's V5/V6 architecture)
    tcn          dilated residual temporal convolutions, masked (MS-TCN single stage)
    hybrid       Conv1D stack -> dilated TCN blocks -> BiGRU or self-attention stage

Every model is wrapped in `FrameClassifier`, which owns the input standardisation (per-feature mean/std
buffers set by the trainer from training data, saved in `model.pt`) and the NaN -> 0 rule, so a checkpoint
rebuilds its exact inputs from raw cached features. With `condition_actions` it also appends the pair's
candidate-action flags (the whitelist, `allowed` (B, 38)) to every frame's input, and with `lab_embedding` a
learned vector of the window's lab (index from `lab_index`, 0 = unknown): forward(x, mask, allowed, lab).
Importing this package does not import torch; `build_model` does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

MODEL_NAMES: tuple[str, ...] = ("conv_bilstm", "tcn", "hybrid")


@dataclass
class ModelConfig:
    """Architecture settings shared by the registry; each model reads the fields it needs."""

    name: str = field(default="conv_bilstm", metadata={"help": f"architecture, one of {MODEL_NAMES}"})
    hidden: int = field(default=64, metadata={"help": "channels of convs and LSTM/GRU units per direction"})
    conv_layers: int = field(default=2, metadata={"help": "Conv1D layers before the recurrent stage"})
    kernel_size: int = field(default=5, metadata={"help": "temporal kernel of the Conv1D layers (odd)"})
    rnn_layers: int = field(default=1, metadata={"help": "stacked bidirectional LSTM/GRU layers"})
    tcn_layers: int = field(default=6, metadata={"help": "dilated residual layers (dilation 1, 2, 4, ...)"})
    stage: str = field(default="gru",
                       metadata={"help": "hybrid's second stage: 'gru', 'lstm' or 'attention'"})
    heads: int = field(default=4, metadata={"help": "attention heads (hybrid with stage='attention')"})
    dropout: float = field(default=0.1, metadata={"help": "dropout probability inside the network"})
    condition_actions: bool = field(default=False, metadata={"help": (
        "give the model the pair's candidate actions (its whitelist from behaviors_labeled, 38 flags) as "
        "extra input channels on every frame")})
    lab_embedding: int = field(default=0, metadata={"help": (
        "size of a learned per-lab embedding appended to every frame's input (0 = off); a lab not seen in "
        "training (or None) gets the learned 'unknown lab' vector")})
    lab_dropout: float = field(default=0.1, metadata={"help": (
        "with lab_embedding: probability that a training window is shown as 'unknown lab' (how that "
        "fallback vector is learned)")})
    lab_bias: bool = field(default=False, metadata={"help": (
        "add a learned per-lab, per-action offset to the output logits (zero at start; a lab not seen in "
        "training gets the learned 'unknown lab' row, trained through lab_dropout)")})
    lab_film: bool = field(default=False, metadata={"help": (
        "scale and shift every standardised input feature by learned per-lab amounts, x * (1 + g) + b (FiLM "
        "on the input; zero at start; a lab not seen in training gets the learned 'unknown lab' row)")})
    labs: list = field(default_factory=list, metadata={"help": (
        "with lab_embedding, lab_bias or lab_film: the training labs, in row order (filled by the trainer "
        "from the cache)")})

    def __post_init__(self):
        if self.name not in MODEL_NAMES:
            raise ValueError(f"model.name={self.name!r}: must be one of {MODEL_NAMES}")
        for k in ("hidden", "conv_layers", "rnn_layers", "tcn_layers", "heads", "kernel_size"):
            if int(getattr(self, k)) < (0 if k == "conv_layers" else 1):
                raise ValueError(f"model.{k}={getattr(self, k)} must be positive")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"model.kernel_size={self.kernel_size} must be odd (centred 'same' padding)")
        if self.stage not in ("gru", "lstm", "attention"):
            raise ValueError(f"model.stage={self.stage!r}: must be 'gru', 'lstm' or 'attention'")
        if self.stage == "attention" and self.hidden % self.heads:
            raise ValueError(f"model.hidden={self.hidden} must be divisible by model.heads={self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout} must be in [0, 1)")
        if int(self.lab_embedding) < 0 or not 0.0 <= self.lab_dropout < 1.0:
            raise ValueError("model.lab_embedding must be >= 0 and model.lab_dropout in [0, 1)")
        self.labs = [str(x) for x in self.labs]

    @property
    def uses_lab(self) -> bool:
        """Whether the model reads the lab (lab_embedding, lab_bias or lab_film)."""
        return bool(self.lab_embedding or self.lab_bias or self.lab_film)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def build_model(cfg: ModelConfig, in_features: int, num_classes: int = 38):
    """The registered architecture `cfg.name`, wrapped with input standardisation:
    forward(x, mask) -> logits."""
    from models.common import FrameClassifier  # torch only when a model is actually built

    if cfg.name == "conv_bilstm":
        from models.conv_bilstm import ConvBiLSTM as M, ConvBiLSTMConfig as C
    elif cfg.name == "tcn":
        from models.tcn import TCN as M, TCNConfig as C
    elif cfg.name == "hybrid":
        from models.hybrid import Hybrid as M, HybridConfig as C
    else:  # __post_init__ already refuses this; kept for configs built by hand
        raise ValueError(f"unknown model {cfg.name!r}; registered: {MODEL_NAMES}")
    sub = C(**{f.name: getattr(cfg, f.name) for f in fields(C)})
    extra = (num_classes if cfg.condition_actions else 0) + int(cfg.lab_embedding)
    return FrameClassifier(M(sub, in_features + extra, num_classes), in_features,
                           condition_actions=bool(cfg.condition_actions),
                           lab_embedding=int(cfg.lab_embedding), labs=list(cfg.labs),
                           lab_dropout=float(cfg.lab_dropout),
                           lab_bias=num_classes if cfg.lab_bias else 0, lab_film=bool(cfg.lab_film))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
