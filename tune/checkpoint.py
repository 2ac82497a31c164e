"""Checkpoint folders: write atomically, load a model back with torch + json only.

A checkpoint folder holds
    model.pt      state_dict (DDP `module.` / compile `_orig_mod.` prefixes stripped), torch.load(weights_only=True)
    config.json   the full TrainConfig (features settings, class list, model, optim, run)
    metrics.json  the metrics of the epoch that wrote it
    state.pt      optimizer, scheduler, scaler, RNG states, epoch, best score (resume only; optional)

Atomic replace: the folder is written as `<dir>.tmp-<pid>`, the old folder is renamed `<dir>.old-<pid>`,
the new one renamed into place, then the old one is deleted. A kill at any point leaves either the old or
the new complete folder; `recover(dir)` (called by the loaders) puts back a `.old` one if the kill hit
between the two renames. No ray/optuna/modal imports: the offline predictor uses `load_model`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from tune.config import TrainConfig

FILES = ("model.pt", "config.json", "metrics.json")


def clean_state_dict(sd: dict) -> dict:
    """Strip wrapper prefixes so the weights load into a bare `build_model(...)`."""
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v.detach().cpu() if torch.is_tensor(v) else v
    return out


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float))


def save_checkpoint(ckpt_dir, model, cfg: TrainConfig, metrics: dict, state: dict | None = None) -> Path:
    """Write a complete checkpoint folder at `ckpt_dir`, atomically replacing any previous one."""
    dst = Path(ckpt_dir)
    dst.parent.mkdir(parents=True, exist_ok=True)
    recover(dst)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir()
    torch.save(clean_state_dict(_unwrap(model).state_dict()), tmp / "model.pt")
    _write_json(tmp / "config.json", cfg.to_dict())
    _write_json(tmp / "metrics.json", metrics)
    if state is not None:
        torch.save(state, tmp / "state.pt")
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)
    return dst


def copy_checkpoint(src, dst) -> Path:
    """Atomically copy a checkpoint folder (e.g. last/ -> best/)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    shutil.copytree(src, tmp)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)
    return dst


def recover(ckpt_dir) -> None:
    """After a kill between the two renames of `save_checkpoint`: put the previous folder back; drop tmp ones."""
    dst = Path(ckpt_dir)
    if not dst.parent.exists():
        return
    olds = sorted(dst.parent.glob(f"{dst.name}.old-*"))
    if not is_complete(dst) and olds:
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(olds[-1], dst)
        olds = olds[:-1]
    for p in olds + sorted(dst.parent.glob(f"{dst.name}.tmp-*")):
        if p.is_dir() and not _in_use(p):
            shutil.rmtree(p, ignore_errors=True)


def _in_use(p: Path) -> bool:
    """A tmp/old folder of a process still alive (another writer) is left alone."""
    try:
        pid = int(p.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def is_complete(ckpt_dir) -> bool:
    d = Path(ckpt_dir)
    return d.is_dir() and all((d / f).is_file() for f in FILES)


def load_config(ckpt_dir) -> TrainConfig:
    """The TrainConfig saved in a checkpoint; keys added since it was written take their defaults."""
    return TrainConfig.from_dict(json.loads((Path(ckpt_dir) / "config.json").read_text()), strict=False)


def load_metrics(ckpt_dir) -> dict:
    return json.loads((Path(ckpt_dir) / "metrics.json").read_text())


def load_model(ckpt_dir, device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint folder -> (model in eval mode, TrainConfig). Needs only torch + json."""
    from models import build_model

    d = Path(ckpt_dir)
    recover(d)
    if not is_complete(d):
        raise FileNotFoundError(f"{d} is not a checkpoint folder (needs {', '.join(FILES)})")
    cfg = load_config(d)
    sd = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
    sd = clean_state_dict(sd)
    in_features = int(sd["x_mean"].numel())
    num_classes = len(cfg.classes) or 38
    model = build_model(cfg.model, in_features, num_classes)
    model.load_state_dict(sd)
    return model.to(device).eval(), cfg


def load_state(ckpt_dir) -> dict | None:
    """The resume state (optimizer, scheduler, RNG, epoch...) or None if the folder has none."""
    p = Path(ckpt_dir) / "state.pt"
    if not p.is_file():
        return None
    # Optimizer/scheduler state dicts and RNG tensors are plain containers of tensors and numbers.
    return torch.load(p, map_location="cpu", weights_only=True)


@torch.no_grad()
def predict_logits(model, x, chunk: int = 8192, context: int = 256, device=None):
    """Logits for full sequences, chunked with `context` frames of overlap on each side (discarded).

    x: float array/tensor [P, T, F] (all pairs of one video) -> float32 tensor [P, T, C] on CPU.
    """
    x = torch.as_tensor(x)
    device = device or next(model.parameters()).device
    P, T, _ = x.shape
    outs = []
    for s in range(0, T, chunk):
        a, b = max(0, s - context), min(T, s + chunk + context)
        xb = x[:, a:b].to(device, torch.float32)
        mask = torch.ones(P, b - a, dtype=torch.bool, device=device)
        logits = model(xb, mask).float()  # (P, b - a, C)
        outs.append(logits[:, s - a: s - a + min(chunk, T - s)].cpu())
    return torch.cat(outs, dim=1)
