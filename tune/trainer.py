"""Train one model on the feature cache: `train(cfg, report=None) -> dict`, the same function for the CLI
(tune/train.py), the Ray Train worker loop (tune/ray_train.py), the Modal fallback and the tests.

What one epoch does: windows of `data.window` frames sampled from the training folds (optionally biased
towards behaviour), class-weighted cross-entropy with the pair's whitelist masked out of the softmax
(background always allowed), AdamW with linear warm-up then cosine decay, gradient clipping; then the
competition metric on the held-out fold's full sequences (`val/score`), per-action F1, losses. A checkpoint
folder `last/` is written every `run.checkpoint_every` epochs and on every new best (then copied to
`best/`); `summary.csv` gets one row per epoch; `report(metrics, checkpoint_dir)` is called once per epoch.
With `run.resume` (default) a run whose `last/` exists continues from its epoch with the saved model,
optimizer, scheduler and RNG states.
Lab-aware options (off by default): lab-balanced windows (`data.lab_alpha`, tune.data.sample_windows),
per-lab class weights, feature-space augmentation in `_step` (tune/augment.py), and an EMA of the weights
(tune/ema.py) that is what validation sees and `model.pt` holds, the raw weights riding in `state.pt` for
resuming.

Pieces of `train`: `_load_data` (cache, rows, class weights), `_build` (model, optimiser, schedule),
`_resume`, `_train_epoch`, `_decide` (validation and early stop, rank 0 decides), `_checkpoint`.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from features import files
from features.errors import MabeDataError
from features.labels import ACTIONS, NUM_CLASSES
from models import build_model, count_parameters
from ensemble.infer import InferSettings, video_probs
from ensemble.thresholds import OOFItem, TuneGrid
from ensemble.thresholds import tune as tune_thresholds
from models.checkpoint import clean_state_dict, copy_checkpoint, is_complete, load_state, save_checkpoint
from tune.config import TrainConfig
from tune.augment import Augmenter, AugSettings
from tune.data import (Prefetcher, class_frequencies, class_weights, epoch_batches, feature_stats,
                       lab_class_weights, load_pairs, open_cache, sample_segments, select_rows, subset_pairs)
from tune.ema import EMA
from tune.losses import hard_targets, lr_lambda, masked_loss

SUMMARY_COLUMNS = ("epoch", "train/loss", "val/loss", "val/score", "val/best_score", "lr", "time/epoch_s",
                   "time/data_share", "train/frames_per_s")
CLASS_NAMES = ["background", *ACTIONS]


# ------------------------------------------------------------------------------------------------ helpers
def _dist():
    """(rank, world) of an initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if cfg.run.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.run.device)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": json.dumps(random.getstate()),
          "numpy": json.dumps(_np_state())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _np_state() -> list:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return [keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    s = json.loads(st["python"])
    random.setstate((s[0], tuple(s[1]), s[2]))
    keys, pos, has_gauss, cached = json.loads(st["numpy"])
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _write_summary(run_dir: Path, rows: list[dict]) -> None:
    """summary.csv rewritten atomically with one row per epoch (and a val/sampled column when sampling)."""
    buf = io.StringIO()
    columns = SUMMARY_COLUMNS + (("val/sampled",) if any("val/sampled" in r for r in rows) else ())
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    files.write_text(run_dir / "summary.csv", buf.getvalue())


def _read_summary(run_dir: Path, upto_epoch: int) -> list[dict]:
    p = run_dir / "summary.csv"
    if not p.is_file():
        return []
    with p.open() as f:
        return [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= upto_epoch]


def validation_probs(model, table, settings: InferSettings, device="cpu"):
    """Yield (row indices, probabilities float32 [P, T, C]) per video of the validation table (per pair when a
    video's pairs differ in length), from `ensemble.infer.video_probs`: the function and settings the OOF set
    (ensemble.build) and the test predictions (ensemble.predict) use. A `tune.data.SegmentTable` (the
    validation sample) has one row per (pair, segment): a video's segments are inferred together, each on
    its own frames."""
    for vid in np.unique(table.video_id):
        idx = np.flatnonzero(table.video_id == vid)
        lengths = table.length[idx]
        groups = [idx] if (lengths == lengths[0]).all() else [[i] for i in idx]  # a video's pairs share T
        for grp in groups:
            x = np.stack([np.asarray(table.pair_x(int(i)), dtype=np.float32) for i in grp])
            yield grp, video_probs([model], x, table.allowed[grp], settings, device=device,
                                   lab=str(table.lab_id[grp[0]]))


# The objective's threshold search (run.objective="tuned"): per (lab, action) thresholds only, a coarse grid,
# two rounds, no smoothing / minimum-duration search (ensemble.build tunes those on the full OOF set).
OBJECTIVE_GRID = TuneGrid(thresholds=tuple(np.round(np.arange(0.05, 0.951, 0.05), 4)), windows=(1,),
                          min_durations=(1,), gap_fills=(0,), rounds=2)


def tuned_score(items: list[OOFItem]) -> float:
    """The competition score of `items` after per-action thresholds tuned on them (OBJECTIVE_GRID)."""
    return float(tune_thresholds(items, grid=OBJECTIVE_GRID).steps["verified"]) if items else 0.0


@torch.no_grad()
def evaluate(model, table, weight: torch.Tensor, device, settings: InferSettings,
             progress: bool = False, objective: str = "argmax") -> dict:
    """Loss and the fast competition metric over full validation sequences.

    Probabilities come from the sliding windows of `validation_probs` (the one inference path, see
    ensemble.infer). val/score_argmax scores their argmax (over each pair's normalised whitelist: other
    classes have probability 0) against the raw whitelist (`allowed_raw`), as the official scorer does;
    val/score is that (objective "argmax") or, objective "tuned", `tuned_score` of the same probabilities.
    val/loss is the class-weighted cross-entropy of the same (window-averaged) probabilities.
    `table`: a PairTable or the validation sample (tune.data.SegmentTable): the rows of one pair are scored
    as one pair (their frames concatenated; the metric's counts are sums over frames).
    """
    from ensemble.metric import PairFrames, aggregate, frame_counts, per_action_f1

    model.eval()
    rows, loss_sum, w_sum = {}, 0.0, 0.0  # (video, agent, target) -> [(row, labels, preds, probs)]
    for grp, probs in validation_probs(model, table, settings, device):
        probs = torch.from_numpy(probs)  # (P, T, C)
        y = torch.from_numpy(np.stack([table.pair_y(int(i)) for i in grp]))  # (P, T)
        allowed = torch.from_numpy(table.allowed[grp])  # (P, C)
        q, w = hard_targets(y, allowed, weight.cpu(), 0.0)
        logp = torch.log(probs.clamp(min=1e-12))  # as logits: masked_loss's softmax over allowed gives probs
        loss_sum += float(masked_loss(logp, q, allowed, w) * w.sum())
        w_sum += float(w.sum())
        preds = probs.argmax(-1).numpy()  # (P, T); non-whitelisted classes have probability 0
        labels = y.clamp(min=0).numpy()  # IGNORE (non-whitelisted) -> background for the metric
        for k, i in enumerate(grp):
            key = (int(table.video_id[i]), int(table.agent[i]), int(table.target[i]))
            rows.setdefault(key, []).append((i, labels[k], preds[k],
                                             probs[k].numpy() if objective == "tuned" else None))
    model.train()
    pairs, items = [], []
    for (vid, agent, target), parts in rows.items():
        i = parts[0][0]
        labels_p, preds_p, probs_p = ([p[j] for p in parts] for j in (1, 2, 3))
        one = len(parts) == 1
        lab_p = labels_p[0] if one else np.concatenate(labels_p)
        pairs.append(PairFrames(lab_id=str(table.lab_id[i]), video_id=vid, agent=agent, target=target,
                                labels=lab_p, preds=preds_p[0] if one else np.concatenate(preds_p),
                                allowed=table.allowed_raw[i]))
        if objective == "tuned":
            items.append(OOFItem(pairs[-1].lab_id, vid, agent, target,
                                 probs_p[0] if one else np.concatenate(probs_p), lab_p, table.allowed_raw[i]))
    counts = frame_counts(pairs)
    argmax = float(aggregate(counts))
    out = {"val/loss": loss_sum / max(w_sum, 1e-8), "val/score": argmax, "val/score_argmax": argmax}
    if objective == "tuned":
        t0 = time.perf_counter()
        out["val/score"] = tuned_score(items)
        out["time/objective_s"] = time.perf_counter() - t0
    out.update({f"val/f1_{a}": float(f) for a, f in per_action_f1(counts).items()})
    return out


# ------------------------------------------------------------------------------------------------ training
@dataclasses.dataclass
class _Run:
    """What one training run holds between its steps (the model, the optimiser, its data and the counters).
    A run with data.cv_folds = K > 1 is K of these in lockstep, one per validation fold (`sub` = "fold<k>":
    its checkpoint is <run_dir>/last/fold<k>, written by `_save`); the first one also keeps the run's summary
    rows."""

    cfg: TrainConfig
    rank: int
    world: int
    dev: torch.device
    run_dir: Path
    sub: str = ""
    model: torch.nn.Module = None
    opt: torch.optim.Optimizer = None
    sched: object = None
    weight: torch.Tensor = None
    lab_weight: torch.Tensor = None  # [P, C] per training pair (optim.per_lab_class_weights), else None
    lab_code: torch.Tensor = None  # [P] lab row of each training pair (model.uses_lab: embedding, bias, FiLM)
    aug: Augmenter = None  # optim.aug_*, None when all off
    ema: EMA = None  # optim.ema_decay > 0: validated and saved instead of the raw weights
    tr: object = None
    va: object = None
    va_sample: object = None  # the fixed validation sample (data.val_sample < 1; tune.data.sample_segments)
    steps: int = 0
    freq: np.ndarray = None
    start_epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    summary: list = dataclasses.field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated and saved as model.pt: the EMA weights when on, else the bare model."""
        return self.ema.model if self.ema is not None else _unwrap(self.model)

    def state(self, epoch: int) -> dict:
        # "scaler": the state format's slot for a loss scaler; bf16 needs none, so it is always empty.
        st = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "scaler": {},
              "rng": _rng_state(), "epoch": epoch, "best_score": self.best_score,
              "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}
        if self.ema is not None:  # model.pt holds the EMA weights; the raw ones resume training
            st["ema"] = self.ema.state_dict()
            st["raw_model"] = clean_state_dict(_unwrap(self.model).state_dict())
        return st


def train(cfg: TrainConfig, report=None, *, resume_from: str | os.PathLike | None = None, device=None,
          wrap_model=None) -> dict:
    """Train `cfg`; returns {best_score, best_epoch, epochs_run, start_epoch, stopped_early, run_dir,
    best_dir, last_dir, metrics (last epoch), parameters}.

    report(metrics, checkpoint_dir | None): called once per epoch on every rank (a barrier under Ray).
    resume_from: a checkpoint folder to continue from (Ray passes `ray.train.get_checkpoint()`'s dir);
    otherwise `<run.out_dir>/last` when `run.resume`. device / wrap_model: set by the Ray worker loop
    (`ray.train.torch.get_device()` / `prepare_model`); without them, DDP wraps the model when a
    torch.distributed group is initialised. data.cv_folds = K > 1: K fold models train in lockstep, metrics
    are their means (plus val/score_fold<k>), checkpoints hold one fold<k>/ checkpoint folder each.
    """
    rank, world = _dist()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    cache = open_cache(cfg.data.cache)
    runs = _make_runs(cfg, rank, world, _device(cfg, device), cache)
    main = runs[0]
    pool = _load_pool(cache, cfg) if len(runs) > 1 else None
    for run in runs:
        _load_data(run, cache, pool)
        n_params = _build(run, cache.num_features, run.tr, run.steps, wrap_model)
    del pool  # the fold tables keep the features they share; the pool's own labels go
    _resume(runs, resume_from)
    cfg = main.cfg
    if main.is_main:
        _print_start(runs, cache.num_features, n_params)

    stopped_early = main.start_epoch > 0 and cfg.run.patience and main.bad_epochs >= cfg.run.patience
    metrics: dict = {}
    first = cfg.optim.epochs + 1 if stopped_early else main.start_epoch + 1  # a finished run stays finished
    for epoch in range(first, cfg.optim.epochs + 1):
        t_epoch = time.perf_counter()
        folds = [_train_epoch(run, run.tr, run.steps, epoch) for run in runs]
        full = _full_pass(cfg, epoch) or main.va is None  # no validation fold: nothing to sample
        for run, fold_metrics in zip(runs, folds):
            _validate(run, fold_metrics, full)
        metrics = _combine(folds)
        improved, stopped_early = _decide(runs, metrics, epoch, full)
        metrics.update({"val/best_score": main.best_score, "val/best_epoch": main.best_epoch,
                        "start_epoch": main.start_epoch, "time/epoch_s": time.perf_counter() - t_epoch})
        # a sampled epoch writes no checkpoint: every checkpoint's val/score (by which Ray Train keeps
        # checkpoints and ensemble.build picks them) is a full pass's
        write = full and (improved or epoch % cfg.run.checkpoint_every == 0 or epoch == cfg.optim.epochs
                          or stopped_early)
        ckpt = _checkpoint(runs, folds, metrics, epoch, write, improved) if main.is_main else None
        if report is not None:
            report(metrics, ckpt)
        _maybe_fail_once(cfg, write, world)
        if stopped_early:
            break

    return {"best_score": main.best_score, "best_epoch": main.best_epoch,
            "epochs_run": metrics.get("epoch", main.start_epoch), "start_epoch": main.start_epoch,
            "stopped_early": bool(stopped_early), "run_dir": str(main.run_dir),
            "best_dir": str(main.run_dir / "best"), "last_dir": str(main.run_dir / "last"),
            "metrics": metrics, "parameters": n_params}


def _make_runs(cfg: TrainConfig, rank: int, world: int, dev: torch.device, cache) -> list[_Run]:
    """One _Run, or with data.cv_folds = K > 1 one per validation fold val_fold, val_fold + 1, ... (mod the
    cache's n_folds); rank 0 first puts back checkpoint folders of a swap interrupted by a kill."""
    run_dir, k = Path(cfg.run.out_dir).resolve(), cfg.data.cv_folds
    if k == 1:
        runs = [_Run(cfg, rank, world, dev, run_dir)]
    else:
        n_folds = int(cache.meta.get("n_folds") or 0)
        if k > n_folds:
            raise MabeDataError(f"data.cv_folds={k} is more than the cache's {n_folds} folds",
                                file=cfg.data.cache)
        runs = [_Run(cfg.replace(**{"data.val_fold": (cfg.data.val_fold + i) % n_folds}), rank, world, dev,
                     run_dir, sub=f"fold{i}") for i in range(k)]
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("last", "best"):
            files.recover_dir(run_dir / name, _complete(k))
    return runs


def _complete(k: int):
    """The completeness test of a run's last/ or best/ folder: a checkpoint (K = 1), or K fold<k>/ ones."""
    if k == 1:
        return is_complete
    return lambda d: all(is_complete(Path(d) / f"fold{i}") for i in range(k))


def _copy_run_checkpoint(src: Path, dst: Path, k: int) -> None:
    """last/ -> best/ (or Ray's copy -> last/): one checkpoint folder, or the K fold folders at once."""
    if k == 1:
        copy_checkpoint(src, dst)
        return
    with files.staged_dir(dst, _complete(k)) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def _print_start(runs: list[_Run], num_features: int, n_params: int) -> None:
    run, cfg = runs[0], runs[0].cfg
    n_val = 0 if run.va is None else len(run.va.length)
    resuming = f", resuming at epoch {run.start_epoch}" if run.start_epoch else ""
    folds = "" if len(runs) == 1 else (
        f", {len(runs)} CV folds {[r.cfg.data.val_fold for r in runs]} (val pairs "
        f"{[0 if r.va is None else len(r.va.length) for r in runs]})")
    print(f"[tune.train] {cfg.model.name}: {n_params:,} parameters, F={num_features}, "
          f"train {len(run.tr.length)} pairs / {run.tr.n_frames:,} frames, val {n_val} "
          f"pairs, {run.steps} steps/epoch x batch {cfg.optim.batch_size} x window {cfg.data.window}, "
          f"world {run.world}, device {run.dev}" + resuming + folds)
    print(cfg.summary())
    print("[tune.train] class weights: " + " ".join(
        f"{CLASS_NAMES[c]}={run.weight[c]:.2g}" for c in np.flatnonzero(run.freq > 0)))


def _load_pool(cache, cfg: TrainConfig):
    """data.cv_folds > 1: every labelled pair loaded once, (table, index label -> its position): the K fold
    runs take their training and validation pairs from it (tune.data.subset_pairs: one copy of the features
    for all K)."""
    rows, _ = select_rows(cache, -1, cfg.data.labs)
    order = rows.sort_values(["video_id", "pair"]).index  # load_pairs' order
    if not order.is_unique:
        raise MabeDataError("the cache index has duplicate row labels", file=cfg.data.cache)
    return load_pairs(cache, rows, cfg.data.in_memory_gb), {label: k for k, label in enumerate(order)}


def _load_data(run: _Run, cache, pool=None) -> None:
    """Check the cache (its feature settings must match cfg.features where given; the run's config then
    records the cache's settings and the class names), load the training and validation pairs (run.tr,
    run.va; from `pool` = `_load_pool` when given), the validation sample (run.va_sample), class weights and
    steps per epoch."""
    cfg = run.cfg
    built = dict(cache.meta["settings"])
    clash = {k: (v, built.get(k)) for k, v in cfg.features.items() if k in built and built[k] != v}
    if clash:  # the checkpoint must record how its inputs were really made
        raise MabeDataError(f"features {clash} (asked, cached) differ from the cache's settings; rebuild the "
                            "cache or point data.cache at one built with them", file=cfg.data.cache)
    run.cfg = cfg = dataclasses.replace(cfg, features=built, classes=list(CLASS_NAMES))
    train_rows, val_rows = select_rows(cache, cfg.data.val_fold, cfg.data.labs)
    if pool is None:
        tr = load_pairs(cache, train_rows, cfg.data.in_memory_gb, cfg.data.shuffle_labels, cfg.run.seed)
        va = load_pairs(cache, val_rows, cfg.data.in_memory_gb) if len(val_rows) else None
    else:
        table, pos = pool
        tr = subset_pairs(table, sorted(pos[k] for k in train_rows.index), cfg.data.shuffle_labels,
                          cfg.run.seed)
        va = subset_pairs(table, sorted(pos[k] for k in val_rows.index)) if len(val_rows) else None
    d = cfg.data
    run.va_sample = va if va is None or not d.samples_validation else sample_segments(
        va, d.val_sample, InferSettings.for_config(cfg.to_dict()).window, cfg.run.seed)
    freq = class_frequencies(tr)
    run.weight = torch.from_numpy(class_weights(freq, cfg.optim.bg_weight, cfg.optim.class_weight_power,
                                                cfg.optim.class_weight_cap, tr.n_frames))
    if cfg.model.uses_lab:  # the lab vocabulary: this model's training labs (row 0 = unknown)
        labs = sorted({str(v) for v in tr.lab_id})
        run.cfg = cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, labs=labs))
        run.lab_code = torch.tensor([labs.index(str(v)) + 1 for v in tr.lab_id], dtype=torch.int64)
    aug = AugSettings.from_optim(cfg.optim)
    run.aug = Augmenter(list(cache.meta["feature_names"]), aug) if aug.active else None
    if cfg.optim.per_lab_class_weights:
        o = cfg.optim
        run.lab_weight = torch.from_numpy(lab_class_weights(tr, o.bg_weight, o.class_weight_power,
                                                            o.class_weight_cap))
    n_windows = cfg.data.samples_per_epoch or max(1, tr.n_frames // cfg.data.window)
    run.tr, run.va, run.freq = tr, va, freq
    run.steps = max(1, -(-n_windows // cfg.optim.batch_size))


def _build(run: _Run, num_features: int, tr, steps: int, wrap_model) -> int:
    """Model (seeded, normalised on the training frames, on the device, wrapped for DDP), AdamW, LR schedule;
    returns the parameter count."""
    cfg, dev = run.cfg, run.dev
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, num_features, NUM_CLASSES)
    mean, std = feature_stats(tr, seed=cfg.run.seed)
    model.set_normalization(mean, std)
    n_params = count_parameters(model)
    model.to(dev)
    if wrap_model is not None:
        model = wrap_model(model)
    elif run.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda"
                                                          else None)
    run.model = model
    run.opt = torch.optim.AdamW(param_groups(model, cfg.optim), lr=cfg.optim.effective_lr(),
                                weight_decay=cfg.optim.weight_decay)
    run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, lr_lambda(
        steps * cfg.optim.epochs, round(steps * cfg.optim.warmup_epochs), cfg.optim.min_lr_ratio))
    run.weight = run.weight.to(dev)
    if run.lab_weight is not None:
        run.lab_weight = run.lab_weight.to(dev)
    run.ema = EMA(_unwrap(model), cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    return n_params


def _resume(runs: list[_Run], resume_from) -> None:
    """Continue from `resume_from`, else from <out_dir>/last when run.resume and it is complete (every fold
    model from its fold<k>/ folder)."""
    main, k = runs[0], len(runs)
    last = main.run_dir / "last"
    src = Path(resume_from) if resume_from else (last if main.cfg.run.resume and _complete(k)(last) else None)
    if src is None:
        return
    for run in runs:
        d = src / run.sub if run.sub else src
        state = load_state(d)
        if state is None:
            return
        saved = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        if run.ema is not None and "raw_model" in state:  # model.pt = EMA weights, the state = raw ones
            run.ema.load_state_dict(state["ema"], saved)
            saved = state["raw_model"]
        _unwrap(run.model).load_state_dict(saved)
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        run.start_epoch, run.best_score = int(state["epoch"]), float(state["best_score"])
        run.best_epoch, run.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
    if main.is_main:
        main.summary = _read_summary(main.run_dir, main.start_epoch)
        if src.resolve() != last.resolve():  # Ray hands us its copy: re-seed the local run folder
            _copy_run_checkpoint(src, last, k)


def _train_epoch(run: _Run, tr, steps: int, epoch: int) -> dict:
    """One pass over this epoch's windows; returns epoch, train/loss, lr, time/data_share,
    train/frames_per_s."""
    cfg, dev, rank, world, model = run.cfg, run.dev, run.rank, run.world, run.model
    t_epoch = time.perf_counter()
    torch.manual_seed(cfg.run.seed * 100_003 + epoch * 1009 + rank)  # dropout/mixup: exact on resume
    gen = np.random.default_rng([cfg.run.seed, epoch, rank, 1])
    batches = epoch_batches(tr, steps * cfg.optim.batch_size, cfg.data.window, cfg.optim.batch_size,
                            cfg.data.behaviour_bias, cfg.run.seed, epoch, rank, world, cfg.data.lab_alpha)
    feed = Prefetcher(tr, batches, cfg.data.window, workers=cfg.data.prefetch_workers)
    model.train()
    loss_sum, n_frames, wait, n_steps = 0.0, 0, 0.0, 0
    bar = _bar(len(feed), run.is_main and cfg.run.progress, f"epoch {epoch}/{cfg.optim.epochs}")
    t_wait = time.perf_counter()
    try:
        for (pair, _), batch in zip(batches, feed):
            wait += time.perf_counter() - t_wait
            weight = run.weight if run.lab_weight is None else run.lab_weight[torch.from_numpy(pair).to(dev)]
            lab = None if run.lab_code is None else run.lab_code[torch.from_numpy(pair)].to(dev)
            loss, frames = _step(run, [torch.from_numpy(a).to(dev, non_blocking=True) for a in batch], gen,
                                 weight, lab)
            loss_sum += loss
            n_frames += frames
            n_steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / n_steps:.3f}", refresh=False)
            t_wait = time.perf_counter()
    finally:
        feed.close()
        bar.close()
    train_s = time.perf_counter() - t_epoch
    if world > 1:  # the mean training loss over all ranks, not rank 0's share
        t = torch.tensor([loss_sum], dtype=torch.float64, device=dev)  # NCCL needs CUDA tensors
        torch.distributed.all_reduce(t)
        loss_sum = float(t) / world
    return {"epoch": epoch, "train/loss": loss_sum / max(1, len(batches)),
            "lr": run.opt.param_groups[0]["lr"],
            "time/data_share": wait / max(train_s, 1e-9), "train/frames_per_s": n_frames * world / train_s}


LAB_PARAMS = ("lab_emb.weight", "lab_bias", "lab_film")  # models.common.FrameClassifier's per-lab rows


def param_groups(model, o) -> list[dict]:
    """AdamW's parameter groups: one (every parameter), or, with optim.lab_lr_mult != 1, the per-lab
    parameters (LAB_PARAMS) in a second group at lr x lab_lr_mult (the schedule scales both alike)."""
    named = list(model.named_parameters())
    lab = [p for n, p in named if n.endswith(LAB_PARAMS)]
    if o.lab_lr_mult == 1.0 or not lab:
        return [{"params": [p for _, p in named]}]
    return [{"params": [p for n, p in named if not n.endswith(LAB_PARAMS)]},
            {"params": lab, "lr": o.effective_lr() * o.lab_lr_mult}]


def _step(run: _Run, batch: list, gen: np.random.Generator, weight: torch.Tensor,
          lab: torch.Tensor | None = None) -> tuple[float, int]:
    """One optimiser step on a batch (x, y, mask, allowed) with optional augmentation and mixup, then the EMA
    update; weight: class weights (C,) or per window (B, C); lab: lab rows (B,) with
    model.uses_lab. Returns (loss, frames)."""
    cfg, dev = run.cfg, run.dev
    x, y, mask, allowed = batch
    if run.aug is not None:
        x, y, mask = run.aug(x, y, mask, gen)
    q, w = hard_targets(y, allowed, weight, cfg.optim.label_smoothing)
    if cfg.optim.mixup_alpha > 0:
        lam = float(gen.beta(cfg.optim.mixup_alpha, cfg.optim.mixup_alpha))
        perm = torch.randperm(x.shape[0], device=dev)
        mask = mask & mask[perm]
        x = lam * x + (1 - lam) * x[perm]
        q = lam * q + (1 - lam) * q[perm]
        w = (lam * w + (1 - lam) * w[perm]) * mask
        allowed = allowed | allowed[perm]
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        logits = run.model(x, mask, allowed, lab)  # (B, W, C)
    loss = masked_loss(logits, q, allowed, w)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.opt.step()
    run.sched.step()
    if run.ema is not None:
        run.ema.update(_unwrap(run.model))
    return float(loss.detach()), int(mask.sum())


def _full_pass(cfg: TrainConfig, epoch: int) -> bool:
    """Whether `epoch` validates on every validation frame: always with data.val_sample = 1, else on epochs
    1, 1 + K, 1 + 2K, ... (K = data.val_full_every) and the last one; the others score the fixed sample."""
    d = cfg.data
    return not d.samples_validation or (epoch - 1) % d.val_full_every == 0 or epoch == cfg.optim.epochs


def _validate(run: _Run, metrics: dict, full: bool = True) -> None:
    """Rank 0: validation metrics of one (fold) model on its validation pairs (full) or on their fixed
    sample, added to `metrics` (with val/sampled 1/0 whenever data.val_sample < 1 or val_full_every > 1)."""
    if not run.is_main:
        return
    d = run.cfg.data
    if d.val_sample < 1 or d.val_full_every > 1:
        metrics["val/sampled"] = 0.0 if full or run.va is None else 1.0
    if run.va is not None:
        table = run.va if full else run.va_sample
        metrics.update(evaluate(run.eval_model, table, run.weight, run.dev,
                                InferSettings.for_config(run.cfg.to_dict()), objective=run.cfg.run.objective))
    else:
        metrics.update({"val/loss": float("nan"), "val/score": -metrics["train/loss"]})


def _combine(folds: list[dict]) -> dict:
    """One fold: its metrics. K folds: the mean of every number all of them report (epoch, lr: the same in
    all), plus val/score_fold<k>."""
    if len(folds) == 1:
        return folds[0]
    keys = [k for k, v in folds[0].items() if isinstance(v, (int, float)) and all(k in f for f in folds)]
    out = {k: float(np.mean([f[k] for f in folds])) for k in keys}
    out["epoch"] = folds[0]["epoch"]
    out.update({f"val/score_fold{i}": f["val/score"] for i, f in enumerate(folds) if "val/score" in f})
    return out


def _decide(runs: list[_Run], metrics: dict, epoch: int, full: bool = True) -> tuple[bool, bool]:
    """Rank 0: best/patience bookkeeping on the (mean) val/score of a full validation pass (a sampled epoch
    changes nothing), the same in every fold run; the (improved, stop) decision broadcast to every rank."""
    run = runs[0]
    flag = torch.zeros(2, dtype=torch.float64)
    if run.is_main:
        improved = full and metrics["val/score"] > run.best_score
        if improved:
            run.best_score, run.best_epoch, run.bad_epochs = metrics["val/score"], epoch, 0
        elif full:
            run.bad_epochs += 1
        for other in runs[1:]:
            other.best_score, other.best_epoch = run.best_score, run.best_epoch
            other.bad_epochs = run.bad_epochs
        stop = bool(run.cfg.run.patience) and run.bad_epochs >= run.cfg.run.patience
        flag[0], flag[1] = float(improved), float(stop)
    if run.world > 1:
        flag = flag.to(run.dev)  # NCCL needs CUDA tensors
        torch.distributed.broadcast(flag, src=0)
        flag = flag.cpu()
    return bool(flag[0]), bool(flag[1])


def _checkpoint(runs: list[_Run], folds: list[dict], metrics: dict, epoch: int, write: bool,
                improved: bool) -> str | None:
    """Rank 0: summary.csv row, last/ (and best/ on a new best) when `write`, the epoch line; the folder
    written, else None."""
    run, ckpt = runs[0], None
    run.summary.append(metrics)
    _write_summary(run.run_dir, run.summary)
    if write:
        ckpt = str(_save(runs, folds, metrics, epoch, improved))
    fold_scores = "" if len(runs) == 1 else " folds " + " ".join(f"{f['val/score']:.4f}" for f in folds)
    sample = " (sample)" if metrics.get("val/sampled") else ""
    print(f"[tune.train] epoch {epoch}: train/loss {metrics['train/loss']:.4f} val/loss "
          f"{metrics['val/loss']:.4f} val/score{sample} {metrics['val/score']:.4f}{fold_scores} (best "
          f"{run.best_score:.4f} @ {run.best_epoch}) lr {metrics['lr']:.2e} {metrics['time/epoch_s']:.1f}s "
          f"data-wait {100 * metrics['time/data_share']:.1f}%" + (" [ckpt]" if ckpt else ""), flush=True)
    return ckpt


def _save(runs: list[_Run], folds: list[dict], metrics: dict, epoch: int, improved: bool) -> Path:
    """Write last/ (copied to best/ on a new best): one checkpoint folder, or with K folds one folder whose
    fold<k>/ sub-folders are complete checkpoints (each with its own val/score) beside a metrics.json of the
    means (no model.pt: never taken for a model), all K replaced at once."""
    run = runs[0]
    last, best = run.run_dir / "last", run.run_dir / "best"
    if len(runs) == 1:
        save_checkpoint(last, run.eval_model, run.cfg, metrics, run.state(epoch))
    else:
        with files.staged_dir(last, _complete(len(runs))) as tmp:
            for r, fold_metrics in zip(runs, folds):
                fold_metrics = {**fold_metrics, "val/mean_score": metrics["val/score"]}
                save_checkpoint(tmp / r.sub, r.eval_model, r.cfg, fold_metrics, r.state(epoch))
            for lock_file in tmp.glob(".*.lock"):  # save_checkpoint's locks: not part of the checkpoint
                lock_file.unlink()
            files.write_json(tmp / "metrics.json", metrics)
    if improved:
        _copy_run_checkpoint(last, best, len(runs))
    return last


def _maybe_fail_once(cfg: TrainConfig, wrote_checkpoint: bool, world: int) -> None:
    """Test hook (run.fail_once_marker): after the first checkpoint, fail once on every rank."""
    marker = cfg.run.fail_once_marker
    if not marker or not wrote_checkpoint:
        return
    exists = Path(marker).exists()
    if world > 1:
        torch.distributed.barrier()  # every rank has looked before rank 0 creates the marker
    if not exists:
        if _dist()[0] == 0:
            Path(marker).parent.mkdir(parents=True, exist_ok=True)
            Path(marker).write_text("failed once\n")
        raise RuntimeError(f"simulated worker failure (run.fail_once_marker={marker})")


def _bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled or os.environ.get("TQDM_DISABLE") == "1",
                leave=False, dynamic_ncols=True)
