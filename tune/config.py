"""Typed training configuration: `TrainConfig` = data + features + model + optim + run.

Precedence: dataclass defaults (the V6 recipe) < config file (YAML or JSON) < `--set key=value` overrides
(dotted keys, e.g. `--set optim.lr=1e-3 --set model.name=tcn --set features.target_fps=30`).
Every field carries a `help` text; `python -m tune.train --help` lists them all. The full config is printed
at start and saved as `config.json` in every checkpoint, so a checkpoint rebuilds its model and inputs alone.

This module imports neither ray, optuna, modal nor torch: the offline Kaggle predictor loads it.

V6 starting point (docs/history.md, V6): batch 384, LR 4e-4, 3 warm-up epochs, class weights ~[1, 5, 8, 8]
(here: bg_weight 1, class_weight_power 0.5, class_weight_cap 8, i.e. w_action = min(8, sqrt(f_bg / f_action)),
which gives ~5 for an action covering 4 % of frames and the cap 8 for rarer ones).
LR scaling rule: `optim.lr` is the LR at `optim.lr_ref_batch` (384). For another batch size the trainer uses
lr × sqrt(batch / 384) (`lr_scaling="sqrt"`, the square-root rule for Adam-type optimisers); `"linear"`
gives lr × batch / 384; `"none"` uses `optim.lr` as is. `OptimConfig.effective_lr()` is the one place it is
computed.
"""
from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from models import ModelConfig
from models.checkpoint import read_config


def help_field(default, help: str, **kw):
    """A dataclass field with a help text (mutable defaults via default_factory); `features.cli.add_flags`
    shows the text as the flag's help."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


_h = help_field


@dataclass
class DataConfig:
    root: str = _h("data/synth", "Kaggle-layout data folder (train.csv, train_tracking/, ...); used to build "
                                 "the feature cache when `cache` does not exist yet")
    cache: str = _h("data/synth/cache", "feature cache folder (features.cache layout: index.parquet, "
                                        "meta.json, videos/)")
    val_fold: int = _h(0, "held-out fold k of the cache's folds (validation videos); -1 = no validation")
    cv_folds: int = _h(1, "validation folds per run: K > 1 trains K models in lockstep, one per fold "
                          "val_fold, val_fold + 1, ... (mod the cache's n_folds); val/score is their mean, "
                          "checkpoints last/ and best/ hold fold<k>/ sub-folders")
    window: int = _h(256, "training window length in (cached) frames")
    samples_per_epoch: int = _h(0, "windows drawn per epoch; 0 = training frames / window (each frame ~once)")
    behaviour_bias: float = _h(0.5, "probability that a window is centred near a random behaviour frame "
                                    "instead of uniform over frames")
    shuffle_labels: bool = _h(False, "permute label sequences across training pairs (a sanity baseline: a "
                                     "model must not learn from it)")
    in_memory_gb: float = _h(8.0, "load the cache into RAM as one numpy array when it is smaller than this "
                                  "(else read windows from its read-only memmaps, shared by trials through "
                                  "the OS page cache)")
    prefetch_workers: int = _h(0, "threads gathering training batches ahead; 0 = auto (1 in RAM, min(4, "
                                  "CPUs) from memmaps)")
    infer_window: int = _h(0, "sliding window (frames) of validation, OOF and test inference; 0 = 2 x window "
                              "(stride and edge trim derived: ensemble.infer.InferSettings.for_config)")
    val_sample: float = _h(1.0, "fraction of the validation frames scored on a sampled epoch: fixed segments "
                                "one inference window long per pair (drawn once from run.seed), inferred "
                                "and scored like the full pass; 1 = every epoch is a full pass")
    val_full_every: int = _h(1, "K: the full validation pass runs on epochs 1, 1+K, 1+2K, ... and the last; "
                                "the others score the val_sample (best/, best_epoch, patience and every "
                                "checkpoint follow full passes only)")
    labs: list = _h([], "train/validate only on these lab_ids (empty = all)")
    lab_alpha: float = _h(1.0, "lab-balanced sampling: a window's lab is drawn with p(lab) ~ frames(lab) ** "
                               "lab_alpha, its frame as before within the lab (1 = frame-proportional, as "
                               "without it; 0 = every lab equally often)")

    def __post_init__(self):
        _check(self.window >= 8, f"data.window={self.window} must be >= 8")
        _check(self.samples_per_epoch >= 0, "data.samples_per_epoch must be >= 0")
        _check(0.0 <= self.behaviour_bias <= 1.0,
               f"data.behaviour_bias={self.behaviour_bias} must be in [0, 1]")
        _check(self.in_memory_gb >= 0, "data.in_memory_gb must be >= 0")
        _check(self.prefetch_workers >= 0, "data.prefetch_workers must be >= 0")
        _check(self.infer_window == 0 or self.infer_window >= 8, "data.infer_window must be 0 or >= 8")
        _check(self.val_fold >= -1, "data.val_fold must be >= -1")
        _check(0.0 <= self.lab_alpha <= 1.0, f"data.lab_alpha={self.lab_alpha} must be in [0, 1]")
        _check(self.cv_folds >= 1, "data.cv_folds must be >= 1")
        _check(0.0 < self.val_sample <= 1.0, f"data.val_sample={self.val_sample} must be in (0, 1]")
        _check(self.val_full_every >= 1, "data.val_full_every must be >= 1")
        _check(self.cv_folds == 1 or self.val_fold >= 0, "data.cv_folds > 1 needs a data.val_fold >= 0")
        self.labs = [str(x) for x in self.labs]

    @property
    def samples_validation(self) -> bool:
        """Whether some epochs score the fixed validation sample (val_sample < 1 and val_full_every > 1)."""
        return self.val_sample < 1 and self.val_full_every > 1


@dataclass
class OptimConfig:
    epochs: int = _h(100, "maximum training epochs (V6 ran 100)")
    batch_size: int = _h(384, "global batch size in windows (split across Ray Train workers); V6: 384")
    lr: float = _h(4e-4, "AdamW peak learning rate at batch `lr_ref_batch` (V6: 4e-4 at 384)")
    lr_ref_batch: int = _h(384, "batch size at which `lr` is given")
    lr_scaling: str = _h("sqrt", "how the LR follows the batch size: 'sqrt', 'linear' or 'none'")
    weight_decay: float = _h(0.01, "AdamW weight decay")
    warmup_epochs: float = _h(3.0, "linear warm-up length in epochs (V6: 3), then cosine decay")
    min_lr_ratio: float = _h(0.01, "cosine decay ends at lr * min_lr_ratio")
    grad_clip: float = _h(1.0, "clip the global gradient norm to this (0 = off)")
    label_smoothing: float = _h(0.05, "label smoothing, spread over the pair's allowed classes only")
    bg_weight: float = _h(1.0, "class weight of background (class 0)")
    class_weight_power: float = _h(0.5, "action weight = (f_background / f_action) ** power (0 = all 1)")
    class_weight_cap: float = _h(8.0, "upper bound of an action's class weight (V6: 8)")
    mixup_alpha: float = _h(0.0, "mixup Beta(alpha, alpha) between windows of a batch (0 = off)")
    per_lab_class_weights: bool = _h(False, "class weights from each lab's own class frequencies (a window "
                                           "uses its lab's weights) instead of the pooled ones")
    ema_decay: float = _h(0.0, "exponential moving average of the weights with this decay (0 = off; e.g. "
                               "0.999): validation and the saved model.pt use the EMA weights, the resume "
                               "state keeps the raw ones")
    lab_lr_mult: float = _h(1.0, "learning-rate multiple of the per-lab parameters (model.lab_embedding, "
                                 "lab_bias, lab_film): zero-initialised offsets move about lr per step")
    aug_flip: float = _h(0.0, "probability of a window's left/right mirror (exact on the pair sets; "
                              "tune/augment.py)")
    aug_jitter: float = _h(0.0, "probability of Gaussian jitter on a window's continuous features")
    aug_jitter_std: float = _h(0.05, "std of that jitter, in cached (scaled, O(1)) feature units")
    aug_stretch: float = _h(0.0, "probability of a window's time stretch (resampled, rates rescaled)")
    aug_stretch_max: float = _h(0.2, "playback rate drawn log-uniformly in [1/(1+m), 1+m]")
    aug_part_dropout: float = _h(0.0, "probability of zeroing one body part's features in a window (its "
                                      "missing flags set)")

    def __post_init__(self):
        _check(self.epochs >= 1, "optim.epochs must be >= 1")
        _check(self.batch_size >= 1, "optim.batch_size must be >= 1")
        _check(self.lr > 0 and self.lr_ref_batch >= 1, "optim.lr and optim.lr_ref_batch must be positive")
        _check(self.lr_scaling in ("sqrt", "linear", "none"), f"optim.lr_scaling={self.lr_scaling!r}: "
                                                              "'sqrt', 'linear' or 'none'")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]")
        _check(0 <= self.label_smoothing < 1, "optim.label_smoothing must be in [0, 1)")
        _check(self.bg_weight > 0 and self.class_weight_cap > 0, "class weights must be positive")
        _check(self.class_weight_power >= 0, "optim.class_weight_power must be >= 0")
        _check(self.mixup_alpha >= 0 and self.grad_clip >= 0 and self.weight_decay >= 0,
               "mixup_alpha, grad_clip and weight_decay must be >= 0")
        _check(0.0 <= self.ema_decay < 1.0, f"optim.ema_decay={self.ema_decay} must be in [0, 1)")
        _check(self.lab_lr_mult > 0, f"optim.lab_lr_mult={self.lab_lr_mult} must be > 0")
        for k in ("aug_flip", "aug_jitter", "aug_stretch", "aug_part_dropout"):
            _check(0.0 <= getattr(self, k) <= 1.0, f"optim.{k}={getattr(self, k)} must be in [0, 1]")
        _check(self.aug_jitter_std >= 0 and 0 < self.aug_stretch_max <= 1,
               "optim.aug_jitter_std must be >= 0 and optim.aug_stretch_max in (0, 1]")

    def effective_lr(self) -> float:
        """The peak LR actually used at `batch_size` (see the module docstring for the rule)."""
        r = self.batch_size / self.lr_ref_batch
        return self.lr * {"sqrt": math.sqrt(r), "linear": r, "none": 1.0}[self.lr_scaling]


@dataclass
class RunConfig:
    out_dir: str = _h("runs/default", "run folder: checkpoints last/ and best/, summary.csv")
    seed: int = _h(0, "seed of weights, window sampling and dropout")
    device: str = _h("auto", "'auto' (cuda if available), 'cpu' or 'cuda'")
    checkpoint_every: int = _h(5, "write last/ every N epochs (best/ is written on every new best)")
    patience: int = _h(10, "early stop after this many epochs without a new best val/score (0 = never)")
    resume: bool = _h(True, "continue from <out_dir>/last if it exists")
    threads: int = _h(0, "torch CPU threads (0 = torch default). Use 1 when several runs share a few cores: "
                         "measured here, 2 OpenMP threads on a busy 2-core box made a step 15x slower")
    progress: bool = _h(True, "show tqdm progress bars")
    objective: str = _h("tuned", "what val/score is: 'tuned' = the competition score after per-action "
                                 "thresholds tuned on this validation set's own probabilities (what the "
                                 "thresholded submission gets; fine for ranking); 'argmax' = the score of "
                                 "the argmax (val/score_argmax is always reported)")
    fail_once_marker: str = _h("", "test hook: after the first checkpoint, raise once unless this file "
                                    "exists (and create it), to exercise restart-from-checkpoint")

    def __post_init__(self):
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"run.device={self.device!r}: 'auto', 'cpu' or 'cuda'")
        _check(self.checkpoint_every >= 1, "run.checkpoint_every must be >= 1")
        _check(self.patience >= 0 and self.threads >= 0, "run.patience and run.threads must be >= 0")
        _check(self.objective in ("tuned", "argmax"),
               f"run.objective={self.objective!r}: 'tuned' or 'argmax'")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "where the frames come from"})
    features: dict = field(default_factory=dict, metadata={
        "help": "features.pipeline.FeatureSettings as a dict (e.g. feature_set, target_fps); filled from the "
                "cache's meta.json at training time, so a checkpoint records how to rebuild its inputs"})
    model: ModelConfig = field(default_factory=ModelConfig,
                               metadata={"help": "architecture (models registry)"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "loss, optimiser, schedule"})
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "output, seed, device, checkpoints"})
    classes: list = field(default_factory=list, metadata={
        "help": "class names by id (background + 37 actions); filled by the trainer"})

    def __post_init__(self):
        for name, cls in _SECTIONS.items():
            v = getattr(self, name)
            if isinstance(v, dict):
                setattr(self, name, _section_from_dict(cls, v, strict=True, where=name))
        _check(isinstance(self.features, dict), "features must be a mapping")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> "TrainConfig":
        """Build from a nested dict. strict=False (loading old checkpoints) ignores unknown keys; missing keys
        always take their defaults."""
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        _check(not (strict and unknown), f"unknown config sections {sorted(unknown)}")
        kw = {name: _section_from_dict(sc, d.get(name) or {}, strict, name) for name, sc in _SECTIONS.items()}
        return cls(features=dict(d.get("features") or {}), classes=list(d.get("classes") or []), **kw)

    def replace(self, **overrides) -> "TrainConfig":
        """A copy with dotted-key overrides applied: cfg.replace(**{"optim.lr": 1e-3})."""
        return apply_overrides(self.to_dict(), overrides)

    def feature_settings(self):
        """`features` as a typed `features.pipeline.FeatureSettings`: the one place the dict is converted (an
        empty dict = the defaults; at training time the trainer fills it from the cache's meta.json)."""
        from features.pipeline import FeatureSettings

        return FeatureSettings.from_dict(self.features)

    def with_absolute_paths(self) -> "TrainConfig":
        """A copy whose local paths (data.root, data.cache, run.out_dir) are absolute; URIs stay as they are.
        The one place paths are resolved: launchers call it once (Ray workers run in another directory)."""
        changed = {key: str(Path(value).resolve()) for key, value in (
            ("run.out_dir", self.run.out_dir), ("data.root", self.data.root), ("data.cache", self.data.cache))
            if value and "://" not in str(value) and str(Path(value).resolve()) != value}
        return self.replace(**changed) if changed else self

    def summary(self) -> str:
        """Human-readable dump, printed at start."""
        lines = []
        for name in ("data", "features", "model", "optim", "run"):
            v = getattr(self, name)
            items = v.items() if isinstance(v, dict) else ((f.name, getattr(v, f.name)) for f in fields(v))
            lines.append(f"[{name}] " + " ".join(f"{k}={val!r}" for k, val in items))
        lines.append(f"[derived] effective_lr={self.optim.effective_lr():.3g}")
        return "\n".join(lines)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _section_from_dict(cls, d: dict, strict: bool, where: str):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    _check(not (strict and unknown), f"unknown keys in [{where}]: {sorted(unknown)}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items() if k in names})


def _coerce(value, typ, key: str):
    """Turn a string from `--set` (or a JSON number) into the field's type; other values pass through."""
    if typ is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            _check(low in ("1", "0", "true", "false", "yes", "no", "on", "off"),
                   f"{key}: {value!r} is not a bool")
            return low in ("1", "true", "yes", "on")
        return bool(value)
    if typ in (int, float):
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {value!r} is not a number") from None
        if typ is int:
            _check(num == int(num), f"{key}: {value!r} is not an integer")
            return int(num)
        return num
    if typ is str:
        return str(value)
    if typ in (list, dict) and isinstance(value, str):
        parsed = _parse_literal(value)
        if typ is list and isinstance(parsed, str):
            parsed = [s for s in parsed.split(",") if s]
        _check(isinstance(parsed, typ), f"{key}: {value!r} is not a {typ.__name__}")
        return parsed
    return value


def _parse_literal(text: str):
    """JSON first, then YAML (if installed), else the raw string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml

        return yaml.safe_load(text)
    except Exception:
        return text


def apply_overrides(base: dict, overrides: dict) -> TrainConfig:
    """Dotted-key overrides ({"optim.lr": "1e-3", "features.target_fps": 30}) onto a nested config dict."""
    d = json.loads(json.dumps(base))  # deep copy
    for key, value in overrides.items():
        parts = key.split(".")
        _check(len(parts) == 2 or (len(parts) == 1 and parts[0] == "classes"),
               f"--set {key}: use section.field, e.g. optim.lr=1e-3")
        section = parts[0]
        _check(section in ("data", "features", "model", "optim", "run"),
               f"--set {key}: unknown section {section!r}")
        if section == "features":
            parsed = _parse_literal(value) if isinstance(value, str) else value
            d.setdefault("features", {})[parts[1]] = parsed
            continue
        cls = _SECTIONS[section]
        names = {f.name: f for f in fields(cls)}
        _check(parts[1] in names, f"--set {key}: unknown field; [{section}] has {sorted(names)}")
        d.setdefault(section, {})[parts[1]] = _coerce(value, typing.get_type_hints(cls)[parts[1]], key)
    return TrainConfig.from_dict(d)


def parse_set_args(items: list[str] | None) -> dict:
    """["optim.lr=1e-3", ...] -> {"optim.lr": "1e-3"}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        _check(bool(sep) and bool(key.strip()), f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _read_config_file(p: Path):
    """The parsed YAML/JSON file; a read or syntax error becomes one ValueError line naming the file."""
    try:
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            try:
                return yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ValueError(f"config file {p}: not valid YAML{where}: {problem}") from None
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {p}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {p}: cannot be read ({exc.__class__.__name__}: "
                         f"{getattr(exc, 'strerror', None) or exc})") from None


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults < file (YAML/JSON, nested sections) < overrides (dotted keys)."""
    base = TrainConfig().to_dict()
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} does not exist")
        loaded = _read_config_file(p)
        _check(isinstance(loaded, dict), f"{p}: top level must be a mapping of sections")
        flat = {}
        for section, body in loaded.items():
            if section == "classes":
                flat["classes"] = body
                continue
            _check(isinstance(body, dict), f"{p}: section {section!r} must be a mapping")
            flat.update({f"{section}.{k}": v for k, v in body.items()})
        base = apply_overrides(base, flat).to_dict()
    return apply_overrides(base, overrides or {})


def load_train_config(ckpt_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in a checkpoint folder (models.checkpoint); keys added since it was written take
    their defaults, unknown ones are ignored."""
    return TrainConfig.from_dict(read_config(ckpt_dir), strict=False)


def config_help() -> str:
    """Every field with its default and meaning, for `--help`."""
    lines = ["config fields (set with --set section.field=value):"]
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()
            lines.append(f"  {section}.{f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    features_help = TrainConfig.__dataclass_fields__['features'].metadata['help']
    lines.append(f"  features.<key> = ...\n      {features_help}")
    return "\n".join(lines)
