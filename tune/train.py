"""Train one model on the feature cache: `train(cfg, report=None) -> dict`, the same function for the CLI,
the Ray Train worker loop (tune/ray_train.py), the Modal fallback and the tests.

Commands:
    python -m tune.train --smoke-test                      # tiny synthetic set + cache under data/smoke, 2 epochs
    python -m tune.train --config tune/configs/v6.yaml --set data.cache=data/cache --set run.out_dir=runs/v6
    python -m tune.train --config tune/configs/cpu.yaml --set optim.lr=1e-3 --set model.name=tcn
    python -m tune.train --smoke-test --workers 2          # the same through Ray Train (DDP, gloo on CPU)
    python -m tune.train --help                            # every config field and its meaning

What one epoch does: windows of `data.window` frames sampled from the training folds (optionally biased
towards behaviour), class-weighted cross-entropy with the pair's whitelist masked out of the softmax
(background always allowed), AdamW with linear warm-up then cosine decay, gradient clipping; then the
competition metric on the held-out fold's full sequences (`val/score`), per-action F1, losses. A checkpoint
folder `last/` is written every `run.checkpoint_every` epochs and on every new best (then copied to
`best/`); `summary.csv` gets one row per epoch; `report(metrics, checkpoint_dir)` is called once per epoch.
With `run.resume` (default) a run whose `last/` exists continues from its epoch with the saved model,
optimizer, scheduler, scaler and RNG states.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F_

from features.errors import MabeDataError, cli_guard
from features.labels import ACTIONS, NUM_CLASSES
from models import build_model, count_parameters
from models.checkpoint import (copy_checkpoint, is_complete, load_state, predict_logits, recover,
                               save_checkpoint)
from tune.config import TrainConfig, config_help, load_config, parse_set_args
from tune.data import (IGNORE, Prefetcher, class_frequencies, class_weights, epoch_batches, feature_stats,
                       load_pairs, open_cache, select_rows)

SUMMARY_COLUMNS = ("epoch", "train/loss", "val/loss", "val/score", "val/best_score", "lr", "time/epoch_s",
                   "time/data_share", "train/frames_per_s")
CLASS_NAMES = ["background", *ACTIONS]


# ------------------------------------------------------------------------------------------------ loss
def masked_loss(logits: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor, weight: torch.Tensor,
                smoothing: float = 0.0) -> torch.Tensor:
    """Class-weighted cross-entropy over each pair's whitelisted classes.

    logits (B, T, C); target (B, T) int with IGNORE, or soft targets (B, T, C) with per-frame weights
    passed as `weight` (B, T); allowed (B, C) bool; weight: class weights (C,) for hard targets.
    Non-allowed classes get no probability mass (their logits are pushed to -1e4 before the softmax) and
    label smoothing spreads only over allowed classes. Mean weighted by the target classes' weights.
    """
    allowed3 = allowed[:, None, :]  # (B, 1, C)
    logits = logits.float().masked_fill(~allowed3, -1e4)
    logp = F_.log_softmax(logits, dim=-1).masked_fill(~allowed3, 0.0)  # (B, T, C)
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8):
        q, w = hard_targets(target, allowed, weight, smoothing)
    else:
        q, w = target, weight
    per_frame = -(q * logp).sum(-1)  # (B, T)
    return (per_frame * w).sum() / w.sum().clamp(min=1e-8)


def hard_targets(target: torch.Tensor, allowed: torch.Tensor, weight: torch.Tensor, smoothing: float):
    """Int labels -> (soft targets (B, T, C), frame weights (B, T)); IGNORE frames get weight 0."""
    valid = target >= 0
    t = target.clamp(min=0).long()
    q = F_.one_hot(t, weight.numel()).float()  # (B, T, C)
    if smoothing > 0:
        a = allowed[:, None, :].float()
        q = (1 - smoothing) * q + smoothing * a / a.sum(-1, keepdim=True)
    w = weight[t] * valid.float()  # (B, T)
    return q, w


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    """Multiplier of the peak LR at a step: linear warm-up from ~0, then cosine down to `min_ratio`."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


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
    """summary.csv rewritten atomically with one row per epoch."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in SUMMARY_COLUMNS})
    tmp = run_dir / f"summary.csv.tmp-{os.getpid()}"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, run_dir / "summary.csv")


def _read_summary(run_dir: Path, upto_epoch: int) -> list[dict]:
    p = run_dir / "summary.csv"
    if not p.is_file():
        return []
    with p.open() as f:
        return [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= upto_epoch]


# ------------------------------------------------------------------------------------------------ validation
@torch.no_grad()
def evaluate(model, table, weight: torch.Tensor, device, chunk: int, progress: bool = False) -> dict:
    """Loss and the fast competition metric over full validation sequences.

    Predictions are the argmax over each pair's (normalised) whitelist; the metric scores them against the
    raw whitelist (`allowed_raw`), as the official scorer does.
    """
    from ensemble.metric import PairFrames, aggregate, frame_counts, per_action_f1

    model.eval()
    pairs, loss_sum, w_sum = [], 0.0, 0.0
    for vid in np.unique(table.video_id):
        idx = np.flatnonzero(table.video_id == vid)
        lengths = table.length[idx]
        groups = [idx] if (lengths == lengths[0]).all() else [[i] for i in idx]  # a video's pairs share T
        for grp in groups:
            x = torch.from_numpy(np.stack([np.asarray(table.pair_x(int(i)), dtype=np.float32) for i in grp]))
            y = torch.from_numpy(np.stack([table.pair_y(int(i)) for i in grp]))  # (P, T)
            logits = predict_logits(model, x, chunk=chunk, context=min(256, chunk // 4), device=device)  # (P, T, C)
            allowed = torch.from_numpy(table.allowed[grp])  # (P, C)
            q, w = hard_targets(y, allowed, weight.cpu(), 0.0)
            loss_sum += float(masked_loss(logits, q, allowed, w) * w.sum())
            w_sum += float(w.sum())
            preds = logits.masked_fill(~allowed[:, None, :], -torch.inf).argmax(-1).numpy()  # (P, T)
            labels = y.clamp(min=0).numpy()  # IGNORE (non-whitelisted) -> background for the metric
            for k, i in enumerate(grp):
                pairs.append(PairFrames(lab_id=str(table.lab_id[i]), video_id=int(table.video_id[i]),
                                        agent=int(table.agent[i]), target=int(table.target[i]),
                                        labels=labels[k], preds=preds[k], allowed=table.allowed_raw[i]))
    model.train()
    counts = frame_counts(pairs)
    out = {"val/loss": loss_sum / max(w_sum, 1e-8), "val/score": float(aggregate(counts))}
    out.update({f"val/f1_{a}": float(f) for a, f in per_action_f1(counts).items()})
    return out


# ------------------------------------------------------------------------------------------------ training
def train(cfg: TrainConfig, report=None, *, resume_from: str | os.PathLike | None = None, device=None,
          wrap_model=None) -> dict:
    """Train `cfg`; returns {best_score, best_epoch, epochs_run, start_epoch, stopped_early, run_dir, best_dir,
    last_dir, metrics (last epoch), parameters}.

    report(metrics, checkpoint_dir | None): called once per epoch on every rank (a barrier under Ray).
    resume_from: a checkpoint folder to continue from (Ray passes `ray.train.get_checkpoint()`'s dir);
    otherwise `<run.out_dir>/last` when `run.resume`. device / wrap_model: set by the Ray worker loop
    (`ray.train.torch.get_device()` / `prepare_model`); without them, DDP wraps the model when a
    torch.distributed group is initialised.
    """
    rank, world = _dist()
    is_main = rank == 0
    dev = _device(cfg, device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    run_dir = Path(cfg.run.out_dir).resolve()
    last_dir, best_dir = run_dir / "last", run_dir / "best"
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover(last_dir)
        recover(best_dir)

    # ---- data
    cache = open_cache(cfg.data.cache)
    built = dict(cache.meta["settings"])
    clash = {k: (v, built.get(k)) for k, v in cfg.features.items() if k in built and built[k] != v}
    if clash:  # the checkpoint must record how its inputs were really made
        raise MabeDataError(f"features {clash} (asked, cached) differ from the cache's settings; rebuild the "
                            "cache or point data.cache at one built with them", file=cfg.data.cache)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "features": dict(cache.meta["settings"]),
                                 "classes": CLASS_NAMES})
    train_rows, val_rows = select_rows(cache, cfg.data.val_fold, cfg.data.labs)
    tr = load_pairs(cache, train_rows, cfg.data.in_memory_gb, cfg.data.shuffle_labels, cfg.run.seed)
    va = load_pairs(cache, val_rows, cfg.data.in_memory_gb) if len(val_rows) else None
    freq = class_frequencies(tr)
    weight = torch.from_numpy(class_weights(freq, cfg.optim.bg_weight, cfg.optim.class_weight_power,
                                            cfg.optim.class_weight_cap, tr.n_frames))
    n_windows = cfg.data.samples_per_epoch or max(1, tr.n_frames // cfg.data.window)
    steps = max(1, -(-n_windows // cfg.optim.batch_size))

    # ---- model, optimiser, schedule
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, cache.num_features, NUM_CLASSES)
    mean, std = feature_stats(tr, seed=cfg.run.seed)
    model.set_normalization(mean, std)
    n_params = count_parameters(model)
    model.to(dev)
    if wrap_model is not None:
        model = wrap_model(model)
    elif world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.effective_lr(), weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(steps * cfg.optim.epochs, round(steps * cfg.optim.warmup_epochs), cfg.optim.min_lr_ratio))
    use_bf16 = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 needs no loss scaling; kept for the state format
    weight = weight.to(dev)

    # ---- resume
    start_epoch, best_score, best_epoch, bad_epochs, summary = 0, -1.0, 0, 0, []
    src = Path(resume_from) if resume_from else (last_dir if cfg.run.resume and is_complete(last_dir) else None)
    if src is not None and load_state(src) is not None:
        state = load_state(src)
        _unwrap(model).load_state_dict(torch.load(src / "model.pt", map_location="cpu", weights_only=True))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch, best_score = int(state["epoch"]), float(state["best_score"])
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        if is_main:
            summary = _read_summary(run_dir, start_epoch)
            if src.resolve() != last_dir.resolve():  # Ray hands us its copy: re-seed the local run folder
                copy_checkpoint(src, last_dir)
    if is_main:
        print(f"[tune.train] {cfg.model.name}: {n_params:,} parameters, F={cache.num_features}, "
              f"train {len(tr.length)} pairs / {tr.n_frames:,} frames, val {0 if va is None else len(va.length)} "
              f"pairs, {steps} steps/epoch x batch {cfg.optim.batch_size} x window {cfg.data.window}, "
              f"world {world}, device {dev}" + (f", resuming at epoch {start_epoch}" if start_epoch else ""))
        print(cfg.summary())
        print("[tune.train] class weights: " + " ".join(
            f"{CLASS_NAMES[c]}={weight[c]:.2g}" for c in np.flatnonzero(freq > 0)))

    stopped_early = start_epoch > 0 and cfg.run.patience and bad_epochs >= cfg.run.patience
    metrics: dict = {}
    first = cfg.optim.epochs + 1 if stopped_early else start_epoch + 1  # a finished run stays finished
    for epoch in range(first, cfg.optim.epochs + 1):
        t_epoch = time.perf_counter()
        torch.manual_seed(cfg.run.seed * 100_003 + epoch * 1009 + rank)  # dropout/mixup: exact on resume
        gen = np.random.default_rng([cfg.run.seed, epoch, rank, 1])
        batches = epoch_batches(tr, steps * cfg.optim.batch_size, cfg.data.window, cfg.optim.batch_size,
                                cfg.data.behaviour_bias, cfg.run.seed, epoch, rank, world)
        feed = Prefetcher(tr, batches, cfg.data.window)
        model.train()
        loss_sum, n_frames, wait, n_steps = 0.0, 0, 0.0, 0
        bar = _bar(len(feed), is_main and cfg.run.progress, f"epoch {epoch}/{cfg.optim.epochs}")
        t_wait = time.perf_counter()
        try:
            for x, y, mask, allowed in feed:
                wait += time.perf_counter() - t_wait
                x = torch.from_numpy(x).to(dev, non_blocking=True)
                y = torch.from_numpy(y).to(dev, non_blocking=True)
                mask = torch.from_numpy(mask).to(dev, non_blocking=True)
                allowed = torch.from_numpy(allowed).to(dev, non_blocking=True)
                q, w = hard_targets(y, allowed, weight, cfg.optim.label_smoothing)
                if cfg.optim.mixup_alpha > 0:
                    lam = float(gen.beta(cfg.optim.mixup_alpha, cfg.optim.mixup_alpha))
                    perm = torch.randperm(x.shape[0], device=dev)
                    mask = mask & mask[perm]
                    x = lam * x + (1 - lam) * x[perm]
                    q = lam * q + (1 - lam) * q[perm]
                    w = (lam * w + (1 - lam) * w[perm]) * mask
                    allowed = allowed | allowed[perm]
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(x, mask)  # (B, W, C)
                loss = masked_loss(logits, q, allowed, w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                opt.step()
                sched.step()
                loss_sum += float(loss.detach())
                n_frames += int(mask.sum())
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
        metrics = {"epoch": epoch, "train/loss": loss_sum / max(1, len(batches)), "lr": opt.param_groups[0]["lr"],
                   "time/data_share": wait / max(train_s, 1e-9), "train/frames_per_s": n_frames * world / train_s}

        # ---- validation on rank 0, decision broadcast to all ranks
        flag = torch.zeros(2, dtype=torch.float64)
        if is_main:
            if va is not None:
                metrics.update(evaluate(_unwrap(model), va, weight, dev, cfg.data.val_chunk))
            else:
                metrics.update({"val/loss": float("nan"), "val/score": -metrics["train/loss"]})
            improved = metrics["val/score"] > best_score
            if improved:
                best_score, best_epoch, bad_epochs = metrics["val/score"], epoch, 0
            else:
                bad_epochs += 1
            flag[0], flag[1] = float(improved), float(bool(cfg.run.patience) and bad_epochs >= cfg.run.patience)
        if world > 1:
            flag = flag.to(dev)  # NCCL needs CUDA tensors
            torch.distributed.broadcast(flag, src=0)
            flag = flag.cpu()
        improved, stopped_early = bool(flag[0]), bool(flag[1])
        metrics.update({"val/best_score": best_score, "val/best_epoch": best_epoch, "start_epoch": start_epoch,
                        "time/epoch_s": time.perf_counter() - t_epoch})

        # ---- checkpoint (rank 0), summary, report (all ranks)
        ckpt = None
        write = improved or epoch % cfg.run.checkpoint_every == 0 or epoch == cfg.optim.epochs or stopped_early
        if is_main:
            summary.append(metrics)
            _write_summary(run_dir, summary)
            if write:
                state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "scaler": scaler.state_dict(), "rng": _rng_state(), "epoch": epoch,
                         "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs}
                save_checkpoint(last_dir, model, cfg, metrics, state)
                if improved:
                    copy_checkpoint(last_dir, best_dir)
                ckpt = str(last_dir)
            print(f"[tune.train] epoch {epoch}: train/loss {metrics['train/loss']:.4f} val/loss "
                  f"{metrics['val/loss']:.4f} val/score {metrics['val/score']:.4f} (best {best_score:.4f} @ "
                  f"{best_epoch}) lr {metrics['lr']:.2e} {metrics['time/epoch_s']:.1f}s "
                  f"data-wait {100 * metrics['time/data_share']:.1f}%" + (" [ckpt]" if ckpt else ""), flush=True)
        if report is not None:
            report(metrics, ckpt)
        _maybe_fail_once(cfg, write, world)
        if stopped_early:
            break

    result = {"best_score": best_score, "best_epoch": best_epoch, "epochs_run": metrics.get("epoch", start_epoch), "start_epoch": start_epoch,
              "stopped_early": bool(stopped_early), "run_dir": str(run_dir), "best_dir": str(best_dir),
              "last_dir": str(last_dir), "metrics": metrics, "parameters": n_params}
    return result


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


# ------------------------------------------------------------------------------------------------ CLI
SMOKE = {"data.root": "data/smoke", "data.cache": "data/smoke/cache", "run.out_dir": "runs/smoke",
         "optim.epochs": "2", "run.resume": "false", "run.threads": "1"}


def smoke_data(root: str, cache: str, n_videos: int = 6, n_frames: int = 900, seed: int = 0, features=None) -> dict:
    """Generate (or reuse) a tiny synthetic Kaggle-layout set at `root` and its feature cache at `cache`."""
    from features.cache import build_cache
    from features.pipeline import FeatureSettings

    root_p = Path(root)
    if not (root_p / "train.csv").is_file():
        from features.synth import generate

        generate(root_p, n_videos=n_videos, n_frames=n_frames, seed=seed)
    return build_cache(root_p, cache, FeatureSettings.from_dict(features or {}), progress=False)


def ensure_cache(cfg: TrainConfig) -> None:
    """Build the cache from `data.root` if `data.cache` does not exist yet (the CLI's convenience)."""
    if (Path(cfg.data.cache) / "index.parquet").is_file():
        return
    if not (Path(cfg.data.root) / "train.csv").is_file():
        raise MabeDataError("neither a feature cache nor a Kaggle-layout train.csv found; pass --set "
                            "data.cache=... or --set data.root=..., make synthetic data with `python -m "
                            "features.synth --out data/synth`, or use --smoke-test", file=cfg.data.cache)
    from features.cache import build_cache
    from features.pipeline import FeatureSettings

    build_cache(cfg.data.root, cfg.data.cache, FeatureSettings.from_dict(cfg.features))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tune.train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one frame-level behaviour model on a feature cache (see the module docstring).",
        epilog=config_help())
    p.add_argument("--config", help="YAML or JSON file with sections data/features/model/optim/run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, dotted (repeatable): --set optim.lr=1e-3")
    p.add_argument("--smoke-test", action="store_true",
                   help="generate/reuse a tiny synthetic set + cache under data/smoke and train 2 epochs")
    p.add_argument("--workers", type=int, default=0,
                   help="run through Ray Train with this many DDP workers (0 = plain in-process training)")
    p.add_argument("--gpu", action="store_true", help="with --workers: one GPU per worker (NCCL)")
    p.add_argument("--name", default=None, help="with --workers: Ray run name (same name = resume)")
    p.add_argument("--storage", default="runs/ray", help="with --workers: Ray storage_path")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        overrides = {**(SMOKE if args.smoke_test else {}), **parse_set_args(args.set)}
        cfg = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as exc:  # a bad config is the user's input: one line, exit 2
        print(f"python -m tune.train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    t0 = time.perf_counter()
    if args.smoke_test:
        smoke_data(cfg.data.root, cfg.data.cache, features=cfg.features)
    else:
        ensure_cache(cfg)
    if args.workers > 0:
        from tune.ray_train import run_ray_train

        name = args.name or f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        res = run_ray_train(cfg, workers=args.workers, use_gpu=args.gpu, storage_path=args.storage, name=name)
        if res.error:
            raise SystemExit(f"python -m tune.train: Ray Train failed: {res.error}")
        best = res.get_best_checkpoint("val/score", "max") if res.best_checkpoints else res.checkpoint
        out = {"best_score": res.metrics.get("val/best_score"), "epochs_run": res.metrics.get("epoch"),
               "best_dir": best.path if best else None, "run_dir": res.path}
    else:
        out = train(cfg)
    print(f"\n[tune.train] done in {time.perf_counter() - t0:.1f}s: best val/score {out['best_score']:.4f} "
          f"after {out['epochs_run']} epochs; best checkpoint {out['best_dir']}")
    print(f"next: python -m ensemble.build --checkpoints {out['best_dir']}   "
          f"(or search: python -m tune.search)")
    return out


if __name__ == "__main__":
    with cli_guard("python -m tune.train"):
        main(sys.argv[1:])
