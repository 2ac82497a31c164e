"""Reading a finished search or run folder: results.csv, trial status, the best trial, every checkpoint.

The one place that finds a search's best checkpoint (used by `ensemble.build`, `tune.results` and
`tune.modal_app`). Only files are read (json, csv; remote storage through pyarrow.fs): Ray, Optuna, Modal and
torch are never imported.

An experiment folder of `python -m tune.search` holds `results.csv` (one row per trial: trial, trial_id,
searched values, best_score, best_checkpoint, status, ...; written by `tune.results`) and Ray Train's
`train-<trial_id>/checkpoint_*` folders; a `python -m tune.train` run folder holds `best/` and `last/`. Every
checkpoint folder is a `models.checkpoint` folder (model.pt, config.json, metrics.json).

    best_trial(exp)            -> (config dict, results row) of the best trial in results.csv
    best_checkpoint(run_dir)   -> the `checkpoint_*` folder of one trial with the best val/score ("" if none)
    discover(paths)            -> every checkpoint folder below paths as a Candidate, best val/score first
    trial_status(root)         -> {"train-<trial_id>": status} from results.csv
    fetch_experiment(uri)      -> a local copy of an s3:// or gs:// experiment (results + checkpoint files)
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from features import storage
from features.errors import MabeDataError
from features.files import sha256_file
from models.checkpoint import FILES, is_complete, load_metrics

SCORE_KEY = "val/score"
RESULTS = "results.csv"
SCORE_COLUMNS = ("best_score", "val/best_score", "val/score")
CHECKPOINT_COLUMNS = ("best_checkpoint", "checkpoint")


# --------------------------------------------------------------------------------------------------------
# results.csv and files that may live on remote storage
# --------------------------------------------------------------------------------------------------------


def read_text(uri: str) -> str | None:
    """Text of a local file or of one on s3://, gs:// or file:// storage (via pyarrow.fs); None if
    unreadable."""
    if "://" not in uri:
        p = Path(uri)
        return p.read_text() if p.is_file() else None
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except (OSError, ValueError, pyarrow.ArrowException):
        return None


def read_results(exp: str | os.PathLike) -> list[dict] | None:
    """The rows of `<exp>/results.csv` as dicts of strings; None when there is no such file."""
    f = Path(exp) / RESULTS
    if not f.is_file():
        return None
    with open(f, newline="") as fh:
        return list(csv.DictReader(fh))


def trial_status(root: str | os.PathLike) -> dict[str, str]:
    """{"train-<trial_id>": status} from the search's results.csv, {} without one (or without those
    columns)."""
    try:
        rows = read_results(root)
    except (OSError, ValueError):
        return {}
    if not rows or "trial_id" not in rows[0] or "status" not in rows[0]:
        return {}
    return {f"train-{r['trial_id']}": str(r["status"]) for r in rows}


def _finite(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return v if math.isfinite(v) else -math.inf


def best_row(exp: str | os.PathLike) -> tuple[dict, str, str]:
    """(row, score column, checkpoint column) of the best trial in results.csv with a finite score and a
    checkpoint; MabeDataError naming the file otherwise."""
    exp = Path(exp).expanduser()
    rows = read_results(exp)
    if rows is None:
        raise MabeDataError("no results.csv: not a finished `python -m tune.search` experiment folder",
                            file=exp)
    header = list(rows[0]) if rows else []
    score_col = next((c for c in SCORE_COLUMNS if c in header), None)
    ckpt_col = next((c for c in CHECKPOINT_COLUMNS if c in header), None)
    if score_col is None or ckpt_col is None:
        raise MabeDataError(f"results.csv needs a best score and a best checkpoint column, has "
                            f"{header or 'no rows'}", file=exp / RESULTS)
    scored = [r for r in rows if _finite(r[score_col]) > -math.inf and r.get(ckpt_col)]
    if not scored:
        raise MabeDataError(f"no trial with a finite {score_col} and a checkpoint", file=exp / RESULTS)
    return max(scored, key=lambda r: _finite(r[score_col])), score_col, ckpt_col


def best_trial(exp: str | os.PathLike) -> tuple[dict, dict]:
    """(config dict, results row) of the best trial of a finished `python -m tune.search` experiment.

    The config is the best checkpoint's config.json (a cross-validated trial's: its fold0/config.json, the
    trial's config with its first validation fold): a path relative to the experiment folder, an absolute
    one, or a URI of remote Ray storage (s3://, gs://: results.csv is mirrored locally, checkpoints are
    not)."""
    exp = Path(exp).expanduser()
    best, score_col, ckpt_col = best_row(exp)
    ckpt = best[ckpt_col]
    if "://" in ckpt:
        cfg_file = ckpt.rstrip("/") + "/config.json"
    else:
        path = Path(ckpt).expanduser()
        cfg_file = str(path if path.is_absolute() else exp / path) + "/config.json"
    text = read_text(cfg_file)
    if text is None:  # a cross-validated trial (data.cv_folds > 1): fold0/ holds the trial's config
        text = read_text(cfg_file[: -len("config.json")] + "fold0/config.json")
    if text is None:
        raise MabeDataError(f"best trial's checkpoint has no readable config.json "
                            f"({score_col}={best[score_col]})", file=cfg_file)
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise MabeDataError(f"config.json is not JSON: {exc}", file=cfg_file) from None
    return config, best


# --------------------------------------------------------------------------------------------------------
# Checkpoint folders
# --------------------------------------------------------------------------------------------------------


def best_checkpoint(run_dir: str | os.PathLike) -> str:
    """The `checkpoint_*` folder directly in a trial's local run folder with the highest val/score in its
    metrics.json ("" if none; unreadable or unscored folders are passed over; the first of equals wins)."""
    best, best_score = "", -math.inf
    for d in sorted(Path(run_dir).glob("checkpoint_*")):
        try:
            score = float(load_metrics(d).get(SCORE_KEY, -math.inf))
        except (OSError, ValueError):
            continue
        if score > best_score:
            best, best_score = str(d), score
    return best


@dataclass
class Candidate:
    """One checkpoint folder found below the input."""

    path: Path
    trial: str  # trial id / run name the checkpoint belongs to (a fold model: the cross-validated trial's)
    score: float  # validation score of that epoch (val/score)
    epoch: int
    model: str  # model.name
    val_fold: int
    sha256: str
    metrics: dict = field(default_factory=dict, repr=False)
    status: str = ""  # the trial's status in the search's results.csv (TERMINATED, STOPPED, ERROR), if any

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.trial}-e{self.epoch}")


def is_checkpoint(d: Path) -> bool:
    """A complete checkpoint folder that is not a temp / old folder of an interrupted swap."""
    return is_complete(d) and not re.search(r"\.(tmp|old)-", d.name)


def fold_of(ckpt: Path) -> int | None:
    """k of a fold model's `fold<k>/` folder (a cross-validated run, data.cv_folds > 1: its checkpoint
    folder holds one complete checkpoint per validation fold), else None."""
    m = re.fullmatch(r"fold(\d+)", Path(ckpt).name)
    return int(m.group(1)) if m else None


def trial_of(ckpt: Path) -> str:
    """`train-<id>` a few levels above the checkpoint (Ray run / local run folder of a trial), else the
    name of the run folder holding it (`runs/v6/best` -> v6, `runs/cv/best/fold1` -> cv)."""
    for p in [ckpt, *list(ckpt.parents)[:4]]:
        if p.name.startswith("train-"):
            return p.name
    run = ckpt.parent.parent if fold_of(ckpt) is not None else ckpt.parent
    return run.name or "run"


def _candidate(d: Path, statuses: dict[str, str]) -> Candidate | None:
    """The Candidate of one checkpoint folder; None when it has no finite val/score (cannot be ranked)."""
    try:
        metrics = json.loads((d / "metrics.json").read_text())
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MabeDataError(f"unreadable checkpoint metadata ({exc})", file=d) from None
    score = metrics.get(SCORE_KEY)
    if score is None or not math.isfinite(float(score)):
        return None
    trial = trial_of(d)
    return Candidate(
        path=d.resolve(),
        trial=trial,
        score=float(score),
        epoch=int(metrics.get("epoch", 0)),
        model=str(cfg.get("model", {}).get("name", "?")),
        val_fold=int(cfg.get("data", {}).get("val_fold", -1)),
        sha256=sha256_file(d / "model.pt"),
        metrics=metrics,
        status=statuses.get(trial, ""),
    )


def _in_ray_copy(d: Path) -> bool:
    """A checkpoint in Ray's storage: a `checkpoint_*` folder, or a fold<k>/ folder in one."""
    return "checkpoint_" in d.name or (fold_of(d) is not None and "checkpoint_" in d.parent.name)


def discover(paths: list[str | os.PathLike]) -> list[Candidate]:
    """Every checkpoint folder at or below `paths`, identical weights once, best score first."""
    found: dict[str, Candidate] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise MabeDataError("experiment / checkpoint folder does not exist", file=root)
        statuses = trial_status(root)
        dirs = [root] if is_checkpoint(root) else sorted(
            {p.parent for p in root.rglob("model.pt") if is_checkpoint(p.parent)})
        for d in dirs:
            c = _candidate(d, statuses)
            if c is None:
                continue
            old = found.get(c.sha256)
            # the same weights in Ray's storage and in the local run folder: prefer Ray's checkpoint_* copy
            if old is None or (_in_ray_copy(d) and not _in_ray_copy(old.path)):
                found[c.sha256] = c
    return sorted(found.values(), key=lambda c: (-c.score, c.trial, -c.epoch))


# --------------------------------------------------------------------------------------------------------
# a remote experiment, copied to this machine
# --------------------------------------------------------------------------------------------------------


def _needed(rel: str) -> bool:
    """Files of a search experiment that building an ensemble reads: the results table and checkpoints."""
    parts = rel.split("/")
    return rel in (RESULTS, "search.json") or (
        parts[-1] in FILES and any(p.startswith("checkpoint_") for p in parts[:-1]))


def fetch_experiment(uri: str) -> Path:
    """A local copy of the s3:// or gs:// experiment `uri`: results.csv, search.json and every checkpoint
    folder's files, downloaded once per content into `features.storage.stage_root()/exp-<listing hash>`
    (`features.storage.stage`, under a lock)."""
    local = storage.stage(uri, "exp-" + storage.listing_key(uri), include=_needed)
    print(f"[ensemble] {uri} -> {local}")
    return local
