"""Frame probabilities from checkpoints: sliding windows with overlap, left/right flip TTA, out-of-fold sets.

One inference path: the trainer's validation (`val/score`, tune.trainer.evaluate), the out-of-fold set
(`oof_probs`, ensemble.build) and the test predictions (ensemble.predict) all call `video_probs` with the
settings `InferSettings.for_config(checkpoint config)`: by default a window of twice the training window
(`data.window`), an edge trim of an eighth of it and the stride that makes the kept parts tile
(`InferSettings.derive`); `data.infer_window` in the training config, or explicit settings given to
ensemble.build, override it.

Sliding windows (`sliding_probs`): a video's pairs [P, T, F] are cut into windows of `window` frames every
`stride` frames (the last window is aligned to the end, so every window is full length when T >= window).
Each window's first and last `trim` frames are discarded (they see zero padding instead of context) except at
the sequence's own ends; the kept frames of overlapping windows are averaged. Probabilities are the softmax
over the pair's (normalised) whitelist, exactly as the model was trained (`tune.train.masked_loss`): a class
that is not whitelisted gets probability 0. Needs stride <= window - 2 * trim so the kept parts cover every
frame.

Test-time augmentation (`flip_pair_features`): a left/right mirror of both mice. The `pair` feature set is
agent-centred with x along the agent's body axis, so a mirror is an exact feature transform: every lateral
coordinate (`*_y`, `rel_vel_y`) changes sign, left and right body parts swap (coordinates and missing flags),
the signed heading difference and both turn rates change sign; distances, speeds and cos are unchanged. The
`motion` feature set holds absolute arena coordinates (the mirror's axis would depend on the arena), so TTA is
refused for it (`flip_permutation` raises).

Out-of-fold (`oof_probs`): a checkpoint predicts the videos of its own validation fold (`data.val_fold` in its
config) from the feature cache; results are cached as an npz keyed by the weights' sha256, the inference
settings and the cache fingerprint, so re-tuning never re-runs the models.

Imports torch, numpy and the features/models packages only (no tune, Ray, Optuna or Modal).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from features import files
from features.errors import MabeDataError
from features.files import sha256_file
from features.labels import NUM_CLASSES


TRAIN_WINDOW = 256  # the training config's default data.window (for configs that lack it)


@dataclass
class InferSettings:
    """How a model runs over a whole video (saved in ensemble.json and the bundle)."""

    window: int = 512  # frames per window (cached / resampled frames)
    stride: int = 384  # step between window starts (window - 2 * trim: kept parts tile, windows overlap 128)
    trim: int = 64  # frames dropped at each inner window edge
    batch: int = 64  # windows per forward pass (an RNN's per-step cost is amortised over the batch)
    tta: bool = False  # average with the left/right mirrored input (pair features only)

    def __post_init__(self):
        self.window, self.stride, self.trim, self.batch = (
            int(self.window),
            int(self.stride),
            int(self.trim),
            int(self.batch),
        )
        if self.window < 8 or self.stride < 1 or self.trim < 0 or self.batch < 1:
            raise ValueError(
                f"InferSettings: need window >= 8, stride >= 1, trim >= 0, batch >= 1, got {self}"
            )
        if self.stride > self.window - 2 * self.trim:
            raise ValueError(
                f"InferSettings: stride {self.stride} > window - 2*trim = "
                f"{self.window - 2 * self.trim}: some frames would never be kept"
            )
        self.tta = bool(self.tta)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def derive(cls, window: int, stride: int | None = None, trim: int | None = None, **kw) -> InferSettings:
        """Settings for an inference window of `window` frames: trim = window // 8 and stride =
        window - 2 * trim (the kept parts tile, consecutive windows overlap by 2 * trim) unless given.
        E.g. 512 -> (512, 384, 64); 64 -> (64, 48, 8); 10 -> (10, 8, 1)."""
        window = int(window)
        trim = window // 8 if trim is None else int(trim)
        stride = window - 2 * trim if stride is None else int(stride)
        return cls(window=window, stride=stride, trim=trim, **kw)

    @classmethod
    def for_window(cls, train_window: int, **kw) -> InferSettings:
        """The default for a model trained on windows of `train_window` frames: `derive(2 * train_window)`
        (training window 256 -> window 512, stride 384, trim 64: today's `InferSettings()`)."""
        return cls.derive(2 * int(train_window), **kw)

    @classmethod
    def for_config(cls, config: dict, window: int | None = None, stride: int | None = None,
                   trim: int | None = None, **kw) -> InferSettings:
        """The settings of a checkpoint's training config (the dict of its config.json): the one place that
        ties inference to training. window: the argument, else `data.infer_window` when > 0, else
        2 x `data.window` (256 when absent); stride and trim: given or derived (`derive`); kw: tta, batch."""
        data = (config or {}).get("data") or {}
        if window is None:
            window = int(data.get("infer_window") or 0) or 2 * int(data.get("window") or TRAIN_WINDOW)
        return cls.derive(window, stride, trim, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> InferSettings:
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


def settings_for(config: dict, settings: InferSettings | dict | None = None) -> InferSettings:
    """A checkpoint's inference settings: `settings` as is when it is an InferSettings (an override),
    else `InferSettings.for_config(config, **settings)` (a dict of overrides: window, stride, trim, tta,
    batch; None values are derived)."""
    if isinstance(settings, InferSettings):
        return settings
    return InferSettings.for_config(config, **{k: v for k, v in (settings or {}).items() if v is not None})


def window_starts(T: int, window: int, stride: int) -> list[int]:
    """Window start frames: 0, stride, 2*stride, ... and a last one ending exactly at T.
    T <= window -> [0] (one short window). E.g. T=1000, window=512, stride=256 -> [0, 256, 488]."""
    if T <= window:
        return [0]
    starts = list(range(0, T - window + 1, stride))
    if starts[-1] != T - window:
        starts.append(T - window)
    return starts


def kept_range(start: int, length: int, T: int, trim: int) -> tuple[int, int]:
    """Frames [a, b) of a window [start, start + length) that are kept: `trim` dropped at inner edges only."""
    a = start if start == 0 else start + trim
    b = start + length if start + length >= T else start + length - trim
    return a, b


# --------------------------------------------------------------------------------------------------------
# TTA: left/right mirror of pair features
# --------------------------------------------------------------------------------------------------------


def flip_permutation(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(source index, sign) per feature so that mirrored[:, j] = sign[j] * x[:, src[j]].

    Refuses feature layouts without an agent-centred frame (the `motion` set), see the module docstring."""
    if "heading_diff" not in names or "a_nose_y" not in names:
        raise ValueError(
            "left/right TTA needs the agent-centred 'pair' feature set; the 'motion' set uses "
            "absolute arena coordinates, whose mirror axis is unknown"
        )
    pos = {n: i for i, n in enumerate(names)}
    src = np.arange(len(names))
    sign = np.ones(len(names), dtype=np.float32)
    for j, n in enumerate(names):
        m = n.replace("_left", "\0").replace("_right", "_left").replace("\0", "_right")
        if m != n and m in pos:
            src[j] = pos[m]
        base = names[src[j]]
        lateral = base.endswith("_y") and not base.startswith("dist")
        if lateral or base in ("heading_diff", "heading_diff_sin", "a_turn_rate", "t_turn_rate"):
            sign[j] = -1.0
    return src, sign


def flip_pair_features(x: np.ndarray, names: list[str]) -> np.ndarray:
    """Mirror image of pair features x [..., F] (a new array)."""
    src, sign = flip_permutation(names)
    return np.asarray(x)[..., src] * sign


# --------------------------------------------------------------------------------------------------------
# Sliding windows
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _window_probs(model, xb: torch.Tensor, allowed_b: torch.Tensor, lab: str | None = None) -> torch.Tensor:
    """Softmax over the allowed classes of a batch of windows: xb (B, W, F), allowed_b (B, C) -> (B, W, C)."""
    mask = torch.ones(xb.shape[:2], dtype=torch.bool, device=xb.device)
    # conditioned models (models.ModelConfig condition_actions, lab_embedding, lab_bias) read the whitelist
    # and the lab
    if getattr(model, "uses_lab", False):  # an unseen lab (or None) -> its "unknown lab" row
        logits = model(xb, mask, allowed_b, model.lab_index([lab] * xb.shape[0])).float()
    elif getattr(model, "condition_actions", False):
        logits = model(xb, mask, allowed_b).float()
    else:
        logits = model(xb, mask).float()  # (B, W, C)
    logits = logits.masked_fill(~allowed_b[:, None, :], -torch.inf)
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def sliding_probs(
    model,
    x: np.ndarray,
    allowed: np.ndarray,
    settings: InferSettings | None = None,
    device: str | torch.device = "cpu",
    lab: str | None = None,
) -> np.ndarray:
    """Probabilities float32 [P, T, C] of one video's pairs, x float [P, T, F], allowed bool [P, C]; lab: the
    video's lab_id (read by lab-conditioned models; None or an unseen lab = their 'unknown lab')."""
    s = settings or InferSettings()
    x = np.asarray(x, dtype=np.float32)
    P, T, _ = x.shape
    allowed = np.asarray(allowed, dtype=bool).copy()
    if allowed.shape != (P, NUM_CLASSES):
        raise MabeDataError(f"allowed must be bool[{P}, {NUM_CLASSES}], got {allowed.shape}")
    allowed[:, 0] = True  # background is always a possible answer
    out = np.zeros((P, T, NUM_CLASSES), dtype=np.float32)
    if P == 0 or T == 0:
        return out
    weight = np.zeros((T,), dtype=np.float32)
    starts = window_starts(T, s.window, s.stride)
    length = min(T, s.window)
    for st in starts:
        a, b = kept_range(st, length, T, s.trim)
        weight[a:b] += 1.0
    jobs = [(p, st) for p in range(P) for st in starts]  # every (pair, window)
    allowed_t = torch.from_numpy(allowed).to(device)
    xt = torch.from_numpy(x if x.flags.writeable else x.copy())  # memory-mapped cache arrays are read-only
    for i in range(0, len(jobs), s.batch):
        chunk = jobs[i : i + s.batch]
        xb = torch.stack([xt[p, st : st + length] for p, st in chunk]).to(device)  # (B, W, F)
        pb = _window_probs(model, xb, allowed_t[[p for p, _ in chunk]], lab).cpu().numpy()  # (B, W, C)
        for (p, st), probs in zip(chunk, pb):
            a, b = kept_range(st, length, T, s.trim)
            out[p, a:b] += probs[a - st : b - st]
    out /= weight[None, :, None]
    return out


def video_probs(
    models: list,
    x: np.ndarray,
    allowed: np.ndarray,
    settings: InferSettings | None = None,
    feature_names: list[str] | None = None,
    device: str | torch.device = "cpu",
    lab: str | None = None,
) -> np.ndarray:
    """Ensemble average over `models` (and the mirrored input when settings.tta) -> float32 [P, T, C]; lab:
    the video's lab_id (`sliding_probs`)."""
    s = settings or InferSettings()
    inputs = [x]
    if s.tta:
        if feature_names is None:
            raise ValueError("TTA needs the feature names")
        inputs.append(flip_pair_features(x, feature_names))
    total = None
    for model in models:
        for xi in inputs:
            p = sliding_probs(model, xi, allowed, s, device, lab)
            total = p if total is None else total + p
    return np.clip(total / float(len(models) * len(inputs)), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------------
# Out-of-fold probabilities of one checkpoint, cached
# --------------------------------------------------------------------------------------------------------


def validation_videos(cache, val_fold: int) -> list[int]:
    """Labelled videos of fold `val_fold` in the cache (sorted)."""
    idx = cache.index
    if "split" in idx:
        idx = idx[idx["split"] == "train"]
    vids = idx.loc[idx["fold"] == val_fold, "video_id"].unique().tolist()
    return sorted(int(v) for v in vids)


def oof_probs(
    ckpt_dir: str | os.PathLike,
    cache,
    settings: InferSettings | dict | None = None,
    cache_file: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """{video_id: float32 [P, T, 38]} for the checkpoint's own validation videos, cached in `cache_file`.

    settings: see `settings_for` (default: from the checkpoint's training config, as its val/score was).

    The npz holds one array per video (float16, probabilities) plus `key`: a JSON of the weights' sha256,
    the inference settings and the cache fingerprint; a file with another key is recomputed."""
    from models.checkpoint import load_model, read_config

    ckpt_dir = Path(ckpt_dir)
    cfg = read_config(ckpt_dir)
    settings = settings_for(cfg, settings)
    val_fold = int((cfg.get("data") or {}).get("val_fold", 0))  # 0: the training config's default
    if val_fold < 0:
        raise MabeDataError(
            "checkpoint was trained without a validation fold (data.val_fold = -1): it has no "
            "out-of-fold videos",
            file=ckpt_dir,
        )
    key = json.dumps(
        {
            "weights": sha256_file(ckpt_dir / "model.pt"),
            "infer": settings.to_dict(),
            "cache": cache.meta.get("fingerprint"),
            "val_fold": val_fold,
        },
        sort_keys=True,
    )
    if cache_file is not None and Path(cache_file).is_file():
        with np.load(cache_file) as z:
            if "key" in z and str(z["key"]) == key:
                return {int(k[1:]): z[k].astype(np.float32) for k in z.files if k.startswith("v")}
    ours = cache.settings.to_dict()
    theirs = type(cache.settings).from_dict(cfg.get("features") or {}).to_dict()
    if ours != theirs:
        raise MabeDataError(
            f"checkpoint feature settings {theirs} differ from the cache's {ours}", file=ckpt_dir
        )
    model, _ = load_model(ckpt_dir, device)
    names = cache.feature_names
    out = {}
    vids = validation_videos(cache, val_fold)
    if not vids:
        raise MabeDataError(f"no videos of fold {val_fold} in the cache", file=cache.path)
    it = vids
    if progress:
        from tqdm import tqdm

        it = tqdm(vids, desc=f"oof {ckpt_dir.parent.name}/{ckpt_dir.name}", leave=False)
    lab_of = {int(v): str(lab) for v, lab in zip(cache.index["video_id"], cache.index["lab_id"])}
    for v in it:
        x = np.asarray(cache.x(v), dtype=np.float32)
        out[v] = video_probs([model], x, cache.allowed(v), settings, names, device, lab=lab_of[v])
    if cache_file is not None:
        with files.atomic_file(cache_file) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" appended
            arrays = {f"v{v}": p.astype(np.float16) for v, p in out.items()}
            np.savez_compressed(f, key=np.array(key), **arrays)
    return {v: p.astype(np.float16).astype(np.float32) for v, p in out.items()}  # same values as a reload
