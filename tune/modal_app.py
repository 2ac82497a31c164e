"""Modal fallback: one training run on one Modal H100, checkpoints committed to a Volume as they are written.

A thin adapter around the same `tune.train.train(cfg, report)` that the CLI, the Ray worker loop and the tests
call. The run folder is `<volume>/<run_name>` (mounted at VOLUME_MOUNT); every report that carries a
checkpoint folder (`last/` every `run.checkpoint_every` = 5 epochs, `best/` on each new best) commits the
Volume at once, so a dead container loses at most the epochs since the last checkpoint (the seed once lost its
early checkpoints because the Volume was never committed). Re-running with the same `--run-name` resumes from
the last committed checkpoint; Modal's own retry (RETRIES) does the same after a crash or preemption.

Commands (repository root; flags after `--` are ours and mirror `python -m tune.train`):

    pip install -e ".[modal]" && modal setup             # once: browser login, token in ~/.modal.toml
    python -m tune.modal_app --help                      # our flags (works offline)
    python -m tune.modal_app --dry-run --smoke-test --run-name smoke   # print the resolved config, no Modal
    modal run -m tune.modal_app -- --smoke-test --run-name smoke       # 2 tiny epochs on an H100 (cents)
    modal run -m tune.modal_app -- --config tune/configs/v6.yaml --set optim.lr=3e-4 --run-name v6
    modal run -m tune.modal_app -- --from-experiment experiments/<search> --set optim.epochs=100 \
        --run-name best100                               # the best trial of a finished Ray search, retrained
    modal run --detach -m tune.modal_app -- ...          # keeps running if this terminal goes away
    mkdir -p runs && modal volume get mabe-tune best100 runs   # -> runs/best100/{last,best,summary.csv}

`python -m tune.modal_app ...` (without --dry-run) launches the same remote run as `modal run -m ...`.
Relative data paths (`data.root`, `data.cache`) are taken inside the Volume, so the first run builds the
synthetic data + feature cache there once; upload real data with `modal volume put mabe-tune <local> <path>`.
The Volume name comes from $MABE_VOLUME (default "mabe-tune") and is created on first use.
Cost (estimate, Modal's H100 list price ~ $3.95/h when written): 100 epochs ~ 1.4 h for the seed's V6 ~ $5.5.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import modal

from ensemble.experiment import best_trial
from features.errors import MabeDataError, cli_guard
from tune.presets import modal_smoke_overrides

PROG = "python -m tune.modal_app"
APP_NAME = "mabe-tune"
GPU = "H100"
TIMEOUT_S = 4 * 3600          # per attempt; the seed's V6 did 100 epochs in 1.4 h on one H100
RETRIES = 2                   # a retry resumes from the last committed checkpoint, so it costs little
RETRY_DELAY_S = 30.0
VOLUME_NAME = os.environ.get("MABE_VOLUME", "mabe-tune")
VOLUME_MOUNT = "/runs"
PYTHON_VERSION = "3.11"
# torch from PyPI on linux x86_64 is the CUDA build; numpy 2.5 needs Python 3.12, hence the cap.
IMAGE_PACKAGES = ("torch>=2.4", "numpy>=1.26,<2.5", "pandas>=2.2", "pyarrow>=15", "tqdm>=4.66", "pyyaml>=6")
LOCAL_PACKAGES = ("features", "models", "tune", "ensemble")
# Package data travels too (features/data/*.csv.gz metadata for the synthetic twin, tune/configs/*.yaml).
SOURCE_SUFFIXES = (".py", ".csv", ".gz", ".json", ".yaml", ".yml", ".md")
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
H100_USD_PER_HOUR = 3.95      # Modal list price at the time of writing: an estimate, check modal.com/pricing


def _ignore_in_image(path: Path) -> bool:
    """add_local_python_source filter: True = leave the file out (caches, editor files, anything unknown)."""
    return "__pycache__" in path.parts or path.suffix not in SOURCE_SUFFIXES


# Building these objects is lazy in modal 1.6: no network, no credentials needed at import.
app = modal.App(APP_NAME)
image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install(*IMAGE_PACKAGES)
    .env({"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30"})
    .add_local_python_source(*LOCAL_PACKAGES, ignore=_ignore_in_image)
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)


def commit_volume() -> None:
    """Make everything written under VOLUME_MOUNT durable and visible to other containers.

    Only valid inside a Modal container with the Volume mounted; tests replace it with monkeypatch."""
    volume.commit()


def check_run_name(run_name: str) -> str:
    """One folder name inside the Volume: letters, digits, '.', '_', '-' (no '/', no '..')."""
    if not isinstance(run_name, str) or not RUN_NAME_RE.match(run_name) or run_name in (".", ".."):
        raise MabeDataError(f"run name {run_name!r} must match {RUN_NAME_RE.pattern} "
                            "(one folder in the Volume)")
    return run_name


def place_in_volume(config: dict, run_name: str, root: str | os.PathLike) -> dict:
    """The config as it runs in the container (Volume mounted at `root`): run folder = root/run_name (whatever
    run.out_dir said), data paths inside the Volume (see `in_volume`) under root, others left as they are."""
    cfg = json.loads(json.dumps(config))
    run = cfg.setdefault("run", {})
    run["out_dir"] = str(Path(root) / check_run_name(run_name))
    data = cfg.setdefault("data", {})
    for key in ("root", "cache"):
        inside = in_volume(str(data[key])) if data.get(key) else None
        if inside is not None:
            data[key] = str(Path(root) / inside)
    return cfg


def run_training(config: dict, run_name: str, root: str | os.PathLike = VOLUME_MOUNT,
                 smoke_test: bool = False) -> dict:
    """Train one config into root/run_name, committing the Volume after every checkpoint; the function body.

    Data first: with `smoke_test` the tiny synthetic set + cache of `python -m tune.train --smoke-test`
    (reused if already in the Volume), else the cache at data.cache, built from data.root when missing
    (tune.prepare.ensure_cache); newly built data is committed before training starts.
    Returns train()'s result plus `checkpoints` ([epoch, folder] of each report that carried one),
    `commits` (Volume commits made) and `wall_s`."""
    from tune.config import TrainConfig
    from tune.prepare import ensure_cache, smoke_data
    from tune.trainer import train

    t0 = time.time()
    cfg = TrainConfig.from_dict(place_in_volume(config, run_name, root))
    commits = 0
    had_cache = (Path(cfg.data.cache) / "index.parquet").is_file()
    if smoke_test:
        smoke_data(cfg.data.root, cfg.data.cache, features=cfg.features)
    else:
        ensure_cache(cfg)
    if not had_cache:
        commit_volume()  # a retry should not rebuild the cache
        commits += 1
    checkpoints: list[list] = []

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        nonlocal commits
        if checkpoint_dir is None:
            return
        # Commit now: a container that dies later keeps this checkpoint (docs/history.md).
        commit_volume()
        commits += 1
        epoch = int(metrics.get("epoch", -1))
        checkpoints.append([epoch, str(checkpoint_dir)])
        print(f"[modal] epoch {epoch}: {Path(checkpoint_dir).name}/ committed to Volume {VOLUME_NAME!r} "
              f"({time.time() - t0:.0f}s)", flush=True)

    result = dict(train(cfg, report=report))
    commit_volume()  # summary.csv rows written after the last checkpoint
    commits += 1
    result.update(run_name=run_name, checkpoints=checkpoints, commits=commits, wall_s=time.time() - t0)
    result.pop("metrics", None)  # per-action dict of the last epoch: summary.csv has it; keep the reply small
    return result


@app.function(image=image, gpu=GPU, volumes={VOLUME_MOUNT: volume}, timeout=TIMEOUT_S,
              retries=modal.Retries(max_retries=RETRIES, initial_delay=RETRY_DELAY_S,
                                    backoff_coefficient=1.0))
def train_remote(config: dict, run_name: str, root: str = VOLUME_MOUNT, smoke_test: bool = False) -> dict:
    """One training run on one H100; `.local(config, name, root=tmp)` runs the same body in-process."""
    return run_training(config, run_name, root, smoke_test)


# ----------------------------------------------------------------------------------------------------------
# Launcher side (your machine): arguments -> config dict -> train_remote.remote(...)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one training on a Modal H100 (the Ray-free fallback).\n"
                    f"Checkpoints go to the Modal Volume $MABE_VOLUME (now {VOLUME_NAME!r}) under\n"
                    "<run-name>/ and are committed after every checkpoint; the same --run-name resumes.\n"
                    "Under `modal run -m tune.modal_app`, put these flags after `--`.",
        epilog=f"GPU={GPU}, timeout {TIMEOUT_S / 3600:g} h per attempt, {RETRIES} retries, Volume mounted "
               f"at {VOLUME_MOUNT}.\nCost: an estimate at ${H100_USD_PER_HOUR}/h (Modal's H100 list price "
               "when written).\nConfig fields: `python -m tune.train --help`.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE",
                     help="YAML/JSON TrainConfig file (sections data/model/optim/run)")
    src.add_argument("--from-experiment", metavar="PATH",
                     help="finished Ray search folder: take the best trial's config (results.csv -> best "
                          "checkpoint's config.json); its run.* settings other than seed reset to defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, repeatable (e.g. --set optim.epochs=100 --set model.name=tcn)")
    p.add_argument("--run-name", default=None,
                   help="folder in the Volume (replaces run.out_dir); reuse a name to resume "
                        "(default: <model>-<UTC time>)")
    p.add_argument("--smoke-test", action="store_true",
                   help="the same tiny config as `python -m tune.train --smoke-test`")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve and print the config and the run folder, then stop (no Modal account "
                        "needed)")
    return p


def resolve(args: argparse.Namespace) -> tuple[dict, str]:
    """Parsed flags -> (TrainConfig dict to send, run name). Raises MabeDataError on bad input."""
    from tune.config import load_config, parse_set_args

    try:
        overrides = parse_set_args(args.overrides)
        if args.smoke_test:
            overrides = {**modal_smoke_overrides(), **overrides}
        if args.from_experiment:
            base, _ = best_trial(args.from_experiment)
            cfg = _apply(from_trial(base), overrides)
        else:
            cfg = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, MabeDataError):
            raise
        raise MabeDataError(str(exc), file=args.config or args.from_experiment) from None
    run_name = args.run_name or f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    return cfg.to_dict(), check_run_name(run_name)


def _apply(base: dict, overrides: dict):
    from tune.config import TrainConfig, apply_overrides

    return apply_overrides(TrainConfig.from_dict(base, strict=False).to_dict(), overrides)


def from_trial(config: dict) -> dict:
    """A search trial's config made fit for a standalone run: everything it searched and trained with (data,
    features, model, optim) plus its run.seed; the other run.* fields (threads, patience 0 under ASHA, no
    progress bars, device, test hooks) were the search's business and go back to the defaults."""
    from tune.config import TrainConfig

    out = json.loads(json.dumps(config))
    seed = (out.get("run") or {}).get("seed", 0)
    out["run"] = {**TrainConfig().to_dict()["run"], "seed": seed}
    return out




def volume_has(path: str) -> bool | None:
    """Whether the Volume holds `path` (relative to its root); None when it cannot be checked (then the
    container finds out). Needs a Modal account: launcher side only."""
    try:
        return len(volume.listdir(path)) > 0
    except modal.exception.NotFoundError:
        return False
    except Exception:  # noqa: BLE001 - no token, no network, an API change: never block on a courtesy check
        return None


def in_volume(path: str) -> str | None:
    """A data path as seen inside the Volume: relative paths are taken there, absolute ones only under
    VOLUME_MOUNT; None for a path outside it (one on your machine, which the container cannot see)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(VOLUME_MOUNT).as_posix()
    except ValueError:
        return None


def check_data_paths(cfg: dict) -> None:
    """data.cache must be somewhere the container sees (e.g. not the local path a Ray search recorded)."""
    cache = str(cfg.get("data", {}).get("cache", ""))
    if in_volume(cache) is None:
        raise MabeDataError(
            f"data.cache={cache} is a path on this machine, not in the Volume: upload it once with "
            f"`modal volume put {VOLUME_NAME} {cache} data/cache` and add --set data.cache=data/cache",
            file=cache)


def preflight(cfg: dict, smoke_test: bool) -> None:
    """Stop before paying for a GPU when the Volume holds neither the feature cache nor data to build it."""
    data = cfg.get("data", {})
    cache, root = in_volume(str(data.get("cache", ""))), in_volume(str(data.get("root", "")))
    if smoke_test or cache is None:
        return
    if volume_has(f"{cache}/index.parquet") is False and (
            root is None or volume_has(f"{root}/train.csv") is False):
        raise MabeDataError(
            f"Volume {VOLUME_NAME!r} holds neither {cache}/index.parquet nor {root}/train.csv; upload a "
            f"cache (`modal volume put {VOLUME_NAME} <local cache dir> {cache}`) or use --smoke-test",
            file=f"{VOLUME_NAME}:/{cache}")


def _print_plan(cfg: dict, run_name: str) -> None:
    epochs = cfg["optim"]["epochs"]
    print(f"[modal] run {run_name!r}: {cfg['model'].get('name')} for up to {epochs} epochs on {GPU}, "
          f"Volume {VOLUME_NAME!r} at {VOLUME_MOUNT}/{run_name} (resumes if it holds a checkpoint)")
    print(f"[modal] estimated cost: ~${H100_USD_PER_HOUR * 1.4 * epochs / 100:.1f} "
          f"(seed V6 pace 1.4 h / 100 epochs at ${H100_USD_PER_HOUR}/h; an estimate)")
    for key in ("root", "cache"):
        path = str(cfg.get("data", {}).get(key) or "")
        inside = in_volume(path)
        where = f"{VOLUME_MOUNT}/{inside}" if inside is not None else f"{path} (outside the Volume)"
        print(f"[modal] data.{key} -> {where}")


def _print_summary(result: dict) -> None:
    run = result.get("run_name")
    ck = result.get("checkpoints") or []
    hours = result.get("wall_s", 0) / 3600
    print(f"[modal] done: run {run!r}: epochs {result.get('start_epoch', 0) + 1}..{result.get('epochs_run')}"
          f"{' (early stop)' if result.get('stopped_early') else ''}, best val/score "
          f"{result.get('best_score', float('nan')):.4f} at epoch {result.get('best_epoch')}, "
          f"{len(ck)} checkpoints, {result.get('commits')} Volume commits, {hours:.2f} h "
          f"(~${H100_USD_PER_HOUR * hours:.2f}, an estimate)")
    print("next: download the checkpoints (runs/<run>/last, best, summary.csv), then build the ensemble:\n"
          f"  mkdir -p runs && modal volume get {VOLUME_NAME} {run} runs\n"
          f"  python -m ensemble.build --checkpoints runs/{run}/best")


def launch(argv: list[str] | tuple[str, ...], prog: str = PROG) -> dict | None:
    """Parse our flags; --dry-run prints the plan, else run on Modal (the caller provides the app context)."""
    args = build_parser(prog).parse_args(list(argv))
    cfg, run_name = resolve(args)
    check_data_paths(cfg)
    _print_plan(cfg, run_name)
    if args.dry_run:
        print(json.dumps(cfg, indent=2, sort_keys=True))
        print(f"next: modal run -m tune.modal_app -- {shlex.join(a for a in argv if a != '--dry-run')}")
        return None
    preflight(cfg, args.smoke_test)
    result = train_remote.remote(cfg, run_name, VOLUME_MOUNT, args.smoke_test)
    _print_summary(result)
    return result


@app.local_entrypoint()
def main(*arglist: str) -> None:
    """`modal run -m tune.modal_app -- <flags>`: raw flags, parsed by our argparse (see --help)."""
    with cli_guard("modal run -m tune.modal_app"):
        launch(arglist, prog="modal run -m tune.modal_app --")


def cli(argv: list[str]) -> None:
    """`python -m tune.modal_app <flags>`: the same as `modal run -m tune.modal_app -- <flags>`."""
    with cli_guard(PROG):
        if "--dry-run" in argv or "-h" in argv or "--help" in argv:
            launch(argv)
            return
        try:
            with modal.enable_output(), app.run():
                launch(argv)
        except modal.exception.AuthError as exc:
            print(f"{PROG}: error: no Modal account configured ({str(exc).split('.')[0]}): run `modal setup` "
                  "once, or try --dry-run", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    # Re-import under the real module name so the Modal function is `tune.modal_app.train_remote`, not
    # `__main__.train_remote` (the container imports it from the source added to the image).
    from tune import modal_app as _self  # noqa: PLW0406

    _self.cli(sys.argv[1:])
