"""Checkpoint folders: written atomically, read back with json + torch (`weights_only=True`) only.

A checkpoint folder holds
    model.pt      state_dict (DDP `module.` / compile `_orig_mod.` prefixes stripped),
                  read with torch.load(weights_only=True)
    config.json   the full training config as a plain dict (sections data, features, model, optim, run,
                  classes); this module reads only `model` (a `models.ModelConfig`) and `classes` from it
    metrics.json  the metrics of the epoch that wrote it
    state.pt      optimizer, scheduler, scaler, RNG states, epoch, best score (resume only; optional)

Writes go through `features.files.staged_dir`: the folder is assembled beside its destination and swapped into
place under a lock on the destination, so a kill at any point leaves either the old or the new complete
folder; `recover(dir)` (called by the trainer at start and by the loaders when a folder is incomplete) puts a
`.old` folder back if the kill hit between the two renames and deletes stale temp folders.

The config stays a dict here: `models` sits below the training package and never imports it (tune wraps the
dict in its `TrainConfig`, see `tune.config.load_train_config`). Nothing here imports ray, optuna or modal,
and the folder-level helpers (`is_complete`, `read_config`, `load_metrics`, `recover`) do not import torch:
the functions that touch weights import it when called.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from features import files
from features.labels import NUM_CLASSES
from models import ModelConfig, build_model

FILES = ("model.pt", "config.json", "metrics.json")


def clean_state_dict(sd: dict) -> dict:
    """Strip wrapper prefixes so the weights load into a bare `build_model(...)`."""
    import torch

    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v.detach().cpu() if torch.is_tensor(v) else v
    return out


def unwrap(model):
    """The bare module inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _as_dict(config) -> dict:
    """A config as a plain dict: a mapping as is, or anything with `to_dict()` (e.g. tune's TrainConfig)."""
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def is_complete(ckpt_dir) -> bool:
    d = Path(ckpt_dir)
    return d.is_dir() and all((d / f).is_file() for f in FILES)


def recover(ckpt_dir) -> None:
    """After a kill inside a folder swap: put the previous folder back if needed; drop stale temp folders."""
    files.recover_dir(ckpt_dir, is_complete)


def save_checkpoint(ckpt_dir, model, config, metrics: dict, state: dict | None = None) -> Path:
    """Write a complete checkpoint folder at `ckpt_dir`, atomically replacing any previous one.

    config: the training config as a dict, or an object with `to_dict()`."""
    import torch

    with files.staged_dir(ckpt_dir, is_complete) as tmp:
        torch.save(clean_state_dict(unwrap(model).state_dict()), tmp / "model.pt")
        files.write_json(tmp / "config.json", _as_dict(config))
        files.write_json(tmp / "metrics.json", metrics)
        if state is not None:
            torch.save(state, tmp / "state.pt")
    return Path(ckpt_dir)


def copy_checkpoint(src, dst, names: tuple[str, ...] | None = None) -> Path:
    """Atomically copy a checkpoint folder (e.g. last/ -> best/); `names`: only these files (e.g. FILES, to
    leave the resume state behind)."""
    with files.staged_dir(dst, is_complete) as tmp:
        if names is None:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            for name in names:
                shutil.copy2(Path(src) / name, tmp / name)
    return Path(dst)


def read_config(ckpt_dir) -> dict:
    """The config saved in a checkpoint, as the plain dict of config.json."""
    return json.loads((Path(ckpt_dir) / "config.json").read_text())


def load_metrics(ckpt_dir) -> dict:
    return json.loads((Path(ckpt_dir) / "metrics.json").read_text())


def model_config(config: dict) -> ModelConfig:
    """The `ModelConfig` of a saved config dict (keys added since it was written take their defaults)."""
    return ModelConfig.from_dict(config.get("model") or {})


def load_weights(path) -> dict:
    """A saved state_dict (`torch.load(weights_only=True)`, on the CPU, wrapper prefixes stripped)."""
    import torch

    return clean_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def rebuild_model(config: dict, state_dict: dict):
    """The model of a saved config dict with its weights loaded (input width from the saved `x_mean`)."""
    in_features = int(state_dict["x_mean"].numel())
    num_classes = len(config.get("classes") or []) or NUM_CLASSES
    model = build_model(model_config(config), in_features, num_classes)
    model.load_state_dict(state_dict)
    return model


def load_model(ckpt_dir, device="cpu"):
    """Rebuild the model of a checkpoint folder -> (model in eval mode, config dict). Needs only torch +
    json."""
    d = Path(ckpt_dir)
    if not is_complete(d):
        recover(d)
    if not is_complete(d):
        raise FileNotFoundError(f"{d} is not a checkpoint folder (needs {', '.join(FILES)})")
    config = read_config(d)
    model = rebuild_model(config, load_weights(d / "model.pt"))
    return model.to(device).eval(), config


def load_state(ckpt_dir) -> dict | None:
    """The resume state (optimizer, scheduler, RNG, epoch...) or None if the folder has none."""
    import torch

    p = Path(ckpt_dir) / "state.pt"
    if not p.is_file():
        return None
    # Optimizer/scheduler state dicts and RNG tensors are plain containers of tensors and numbers.
    return torch.load(p, map_location="cpu", weights_only=True)
