"""`python -m tune.train`: train one model on the feature cache, in-process or through Ray Train.

The training itself is `tune.trainer.train(cfg, report=None) -> dict` (re-exported here with the loss helpers
of tune/losses.py), the same function for this CLI, the Ray Train worker loop (tune/ray_train.py), the Modal
fallback and the tests. The config is resolved once here (defaults < --config < --set, paths absolute).

Commands:
    python -m tune.train --smoke-test                      # tiny synthetic set + cache, data/smoke, 2 epochs
    python -m tune.train --config tune/configs/v6.yaml --set data.cache=data/cache --set run.out_dir=runs/v6
    python -m tune.train --config tune/configs/cpu.yaml --set optim.lr=1e-3 --set model.name=tcn
    python -m tune.train --smoke-test --workers 2          # the same through Ray Train (DDP, gloo on CPU)
    python -m tune.train --help                            # every config field and its meaning

What one epoch does, checkpoints, summary.csv and resume: see tune/trainer.py.
"""
from __future__ import annotations

import argparse
import sys
import time

from features.cli import ArgumentParser, check_range
from features.errors import cli_guard
from tune.config import config_help, load_config, parse_set_args
from tune.losses import hard_targets, lr_lambda, masked_loss
from tune.prepare import ensure_cache, smoke_data
from tune.presets import TRAIN_SMOKE
from tune.ray_train import run_ray_train
from tune.trainer import CLASS_NAMES, SUMMARY_COLUMNS, evaluate, train

__all__ = ["CLASS_NAMES", "SUMMARY_COLUMNS", "evaluate", "hard_targets", "lr_lambda", "main", "masked_loss",
           "parse_args", "train"]


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(
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
    args = p.parse_args(argv)
    check_range(p, args, {"--workers": 0})
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        overrides = {**(TRAIN_SMOKE if args.smoke_test else {}), **parse_set_args(args.set)}
        cfg = load_config(args.config, overrides).with_absolute_paths()
    except (ValueError, FileNotFoundError) as exc:  # a bad config is the user's input: one line, exit 2
        print(f"python -m tune.train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    t0 = time.perf_counter()
    if args.smoke_test:
        smoke_data(cfg.data.root, cfg.data.cache, features=cfg.features)
    else:
        ensure_cache(cfg)
    if args.workers > 0:
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
