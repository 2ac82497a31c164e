"""Search results: one row per trial in `results.csv`, PNG plots, the ranked table with GPU-hours and cost.

Written by `python -m tune.search` at the end of a search. To redo them from an experiment folder:

    python -m tune.results --experiment experiments/<name> [--gpu-hour-cost 6.0]

Columns of results.csv: trial (1 = the V6 baseline), trial_id, every searched value (dotted TrainConfig key),
best_score (best val/score of the trial), epochs (epochs trained), wall_s, gpu_hours (= wall time x GPUs per
trial), cost_usd (= gpu_hours x --gpu-hour-cost), best_checkpoint (folder with model.pt, config.json,
metrics.json), status (TERMINATED = ran all epochs, STOPPED = early-stopped by ASHA or the time budget,
ERROR = failed after its retries), error.
Plots: optimization_history.png, parallel_coordinates.png, per_action_f1.png (best trial's best epoch).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ensemble.experiment import best_checkpoint
from features import files, storage
from features.errors import MabeDataError
from tune.keys import BEST_CKPT, OBJECTIVE, SCORE
from tune.search_config import SearchConfig


def _last(result, key: str):
    m = result.metrics or {}
    if m.get(key) not in (None, ""):
        return m[key]
    df = result.metrics_dataframe
    if df is not None and key in df and df[key].notna().any():
        return df[key].dropna().iloc[-1]
    return None


def _trial_id(result) -> str:
    """Tune's 8-hex trial id (from the metrics, else from the trial folder
    `<trainable>_<id>_<n>_<params>`)."""
    tid = _last(result, "trial_id")
    if tid is not None:
        return str(tid)
    parts = Path(str(result.path)).name.split("_")
    return next((p for p in parts if len(p) == 8 and all(c in "0123456789abcdef" for c in p)), parts[0])


def _trial_number(result) -> int:
    """Creation order of the trial (1 = first suggestion = the V6 point): Tune's experiment tag
    `<n>_<params>`."""
    tag = _last(result, "experiment_tag")
    if tag is None:  # never reported: the folder name carries the tag after the id
        name = Path(str(result.path)).name
        tag = name.split(_trial_id(result) + "_", 1)[-1]
    head = str(tag).split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def best_checkpoint_of(experiment_path: str, trial_id: str) -> str:
    """Best checkpoint folder of `train-<trial_id>` by val/score, read from storage (for trials that ASHA
    stopped before their driver could report it). Local storage: each kept checkpoint's metrics.json;
    remote storage: Ray Train's run snapshot. "" if none."""
    run_dir = f"{experiment_path.rstrip('/')}/train-{trial_id}"
    if "://" in run_dir:
        try:
            import ray.train

            res = ray.train.Result.from_path(run_dir)
            best = res.get_best_checkpoint(SCORE, "max") if res.best_checkpoints else None
            return storage.as_uri(best.path, run_dir) if best is not None else ""
        except Exception:  # noqa: BLE001 - no snapshot yet (killed early) or a storage hiccup: no path
            return ""
    return best_checkpoint(run_dir)


def collect(grid, scfg: SearchConfig) -> pd.DataFrame:
    """One row per trial of a ResultGrid, sorted by trial number (trial 1 = the V6 point)."""
    keys = list(scfg.search_space())
    rows = []
    for result in grid:
        df = result.metrics_dataframe
        last = dict(result.metrics or {})
        config = dict(result.config or {})
        tid = _trial_id(result)
        scores = []
        if df is not None and len(df):
            for col in (SCORE, OBJECTIVE):
                if col in df:
                    scores += [float(x) for x in df[col].dropna()]
        best = max(scores) if scores else math.nan
        has_epoch = df is not None and "epoch" in df and df["epoch"].notna().any()
        epochs = int(df["epoch"].max()) if has_epoch else 0
        wall = float(last.get("time_total_s") or 0.0)
        gpu_h = wall / 3600.0 * scfg.gpus_per_trial
        ckpt = str(last.get(BEST_CKPT) or "") or best_checkpoint_of(scfg.experiment_path(), tid)
        if result.error is not None:
            status = "ERROR"
        elif BEST_CKPT in last:
            status = "TERMINATED"
        else:
            status = "STOPPED"
        row = {"trial": _trial_number(result), "trial_id": tid, **{k: config.get(k) for k in keys},
               "best_score": best, "epochs": epochs,
               "wall_s": wall, "gpu_hours": gpu_h, "cost_usd": gpu_h * scfg.gpu_hour_cost,
               "best_checkpoint": ckpt, "status": status,
               "error": "" if result.error is None else str(result.error).splitlines()[0][:200]}
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial", "trial_id", *keys, "best_score", "epochs", "wall_s",
                                        "gpu_hours", "cost_usd", "best_checkpoint", "status", "error"])
    return table.sort_values("trial").reset_index(drop=True)


def per_action_f1(grid, trial_id: str) -> dict[str, float]:
    """val/f1_<action> at the best epoch (by val/score) of one trial."""
    for result in grid:
        if _trial_id(result) != trial_id:
            continue
        df = result.metrics_dataframe
        if df is None or SCORE not in df or df[SCORE].isna().all():
            return {}
        row = df.loc[df[SCORE].idxmax()]
        return {c[len("val/f1_"):]: float(row[c]) for c in df.columns
                if c.startswith("val/f1_") and pd.notna(row[c])}
    return {}


def ranked_report(table: pd.DataFrame, keys: list[str], wall_s: float | None = None) -> str:
    """The printed table: ranked by best score, every searched value, epochs, wall time, cost; then totals,
    best vs V6 and the best checkpoints."""
    if table.empty:
        return "no trials"
    short = {k: k.split(".")[-1] for k in keys}
    ranked = table.sort_values("best_score", ascending=False, na_position="last")
    view = pd.DataFrame({"rank": range(1, len(ranked) + 1), "trial": ranked["trial"].values})
    for k in keys:
        vals = ranked[k].values
        view[short[k]] = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in vals]
    view["best val/score"] = [f"{v:.4f}" for v in ranked["best_score"]]
    view["epochs"] = ranked["epochs"].values
    view["wall_s"] = [f"{v:.0f}" for v in ranked["wall_s"]]
    view["gpu_h"] = [f"{v:.3f}" for v in ranked["gpu_hours"]]
    view["cost_$"] = [f"{v:.2f}" for v in ranked["cost_usd"]]
    view["status"] = ranked["status"].values
    lines = [view.to_string(index=False)]
    lines.append(f"total: {len(table)} trials, {table['gpu_hours'].sum():.3f} GPU-hours, "
                 f"${table['cost_usd'].sum():.2f}" + (f", search wall time {wall_s:.0f} s" if wall_s else ""))
    lines += _vs_v6(table, ranked.iloc[0])
    lines.append("best checkpoints:")
    for _, r in ranked.head(3).iterrows():
        if r["best_checkpoint"]:
            lines.append(f"  trial {r['trial']} ({r['best_score']:.4f}): {r['best_checkpoint']}")
    return "\n".join(lines)


def _vs_v6(table: pd.DataFrame, best: pd.Series) -> list[str]:
    """"best vs V6" when the V6 trial (trial 1) trained all its epochs; otherwise why there is no difference
    (a V6 that was stopped or failed is no baseline)."""
    v6 = table.loc[table["trial"] == 1]
    if v6.empty:
        return []
    v6 = v6.iloc[0]
    if v6["status"] == "ERROR":
        why = f": {v6['error']}" if v6["error"] else ""
        return [f"best vs V6: not compared, the V6 trial (trial 1) failed{why}"]
    if v6["status"] != "TERMINATED":
        return [f"best vs V6: not compared, the V6 trial (trial 1) was {v6['status']} after {v6['epochs']} "
                f"epochs (time budget or interrupt) and did not train all its epochs"]
    if pd.isna(v6["best_score"]) or pd.isna(best["best_score"]):
        return []
    return [f"best vs V6: {best['best_score'] - v6['best_score']:+.3f} "
            f"(trial {best['trial']}: {best['best_score']:.4f}, V6 trial 1: {v6['best_score']:.4f})"]


# --------------------------------------------------------------------------------------------------------
# Plots (matplotlib Agg, no display needed)


def _norm(values: list[Any], spec: tuple) -> list[float]:
    """Values of one parameter mapped to [0, 1] (log scale for loguniform, index for choices)."""
    kind = spec[0]
    if kind == "choice":
        n = max(1, len(spec[1]) - 1)
        return [spec[1].index(v) / n if v in spec[1] else math.nan for v in values]
    lo, hi = float(spec[1]), float(spec[2])
    if kind == "loguniform":
        lo, hi = math.log(lo), math.log(hi)
        values = [math.log(v) if v and v > 0 else math.nan for v in values]
    return [(float(v) - lo) / (hi - lo) if v is not None else math.nan for v in values]


def plot_all(table: pd.DataFrame, space: dict, f1: dict[str, float], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    scores = table["best_score"].astype(float)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(table["trial"], scores, label="trial best val/score", zorder=3)
    ax.plot(table["trial"], scores.cummax(), drawstyle="steps-post", color="C1", label="best so far")
    if len(scores) and pd.notna(scores.iloc[0]):
        ax.axhline(scores.iloc[0], color="grey", ls="--", label="V6 (trial 1)")
    ax.set(xlabel="trial", ylabel="val/score", title="Optimisation history")
    ax.legend(loc="lower right")
    written.append(_save(fig, out / "optimization_history.png", plt))

    keys = [k for k in space if k in table]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * (len(keys) + 1)), 4.5))
    cmap = plt.get_cmap("viridis")
    finite = scores[scores.notna()]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    cols = {k: _norm(list(table[k]), space[k]) for k in keys}
    for i in range(len(table)):
        s = scores.iloc[i]
        ys = [cols[k][i] for k in keys] + [0.5 if hi == lo or pd.isna(s) else (s - lo) / (hi - lo)]
        color = "lightgrey" if pd.isna(s) else cmap(0.5 if hi == lo else (s - lo) / (hi - lo))
        ax.plot(range(len(ys)), ys, color=color, alpha=0.8, lw=2 if i == 0 else 1)
    ax.set_xticks(range(len(keys) + 1), [k.split(".")[-1] for k in keys] + ["score"], rotation=30)
    ax.set(ylim=(-0.05, 1.05), ylabel="position in range", title="Parallel coordinates (colour = val/score)")
    written.append(_save(fig, out / "parallel_coordinates.png", plt))

    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.25 * len(f1) + 1)))
    names = sorted(f1, key=f1.get)
    ax.barh(names, [f1[n] for n in names])
    ax.set(xlim=(0, 1), xlabel="validation F1", title="Per-action F1 of the best trial")
    if not names:
        ax.text(0.5, 0.5, "no per-action F1 reported", ha="center", transform=ax.transAxes)
    written.append(_save(fig, out / "per_action_f1.png", plt))
    return written


def _save(fig, path: Path, plt) -> str:
    fig.tight_layout()
    with files.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return str(path)


def write_all(table: pd.DataFrame, grid, scfg: SearchConfig, wall_s: float | None = None) -> dict:
    """results.csv + plots into the local experiment folder (and copied to remote storage); summary dict."""
    out = scfg.local_dir()
    out.mkdir(parents=True, exist_ok=True)
    files.write_text(out / "results.csv", table.to_csv(index=False))
    space = scfg.search_space()
    ranked = table.sort_values("best_score", ascending=False, na_position="last")
    best = ranked.iloc[0] if len(ranked) else None
    f1 = per_action_f1(grid, best["trial_id"]) if best is not None else {}
    plots = plot_all(table, space, f1, out)
    if scfg.is_remote_storage():
        _upload(out, scfg.experiment_path())
    v6 = table.loc[table["trial"] == 1, "best_score"]
    summary = {
        "experiment": scfg.experiment_path(),
        "results_csv": str(out / "results.csv"),
        "plots": plots,
        "n_trials": len(table),
        "status_counts": table["status"].value_counts().to_dict() if len(table) else {},
        "best_trial": int(best["trial"]) if best is not None else None,
        "best_score": float(best["best_score"]) if best is not None else None,
        "v6_score": float(v6.iloc[0]) if len(v6) else None,
        "best_checkpoint": str(best["best_checkpoint"]) if best is not None else "",
        "gpu_hours": float(table["gpu_hours"].sum()) if len(table) else 0.0,
        "cost_usd": float(table["cost_usd"].sum()) if len(table) else 0.0,
        "wall_s": wall_s,
    }
    summary["report"] = ranked_report(table, list(space), wall_s)
    return summary


def _upload(local: Path, remote: str) -> None:
    """Copy results.csv and the plots next to the remote experiment (features.storage: s3://, gs://)."""
    for f in sorted(local.iterdir()):
        if f.suffix in (".csv", ".png", ".json"):
            storage.upload_file(f, storage.join(remote, f.name))


def main(argv: list[str] | None = None) -> int:
    from features.cli import ArgumentParser, check_range

    p = ArgumentParser(prog="python -m tune.results", description="Rewrite results.csv and plots "
                                "of a finished (or interrupted) search from its experiment folder.")
    p.add_argument("--experiment", required=True, help="experiment folder (<storage>/<name>)")
    p.add_argument("--gpu-hour-cost", type=float, default=None,
                   help="USD per GPU-hour (default: the search's)")
    a = p.parse_args(argv)
    check_range(p, a, {"--gpu-hour-cost": 0})
    exp = Path(a.experiment).resolve()
    if not exp.is_dir():
        raise MabeDataError(f"--experiment {a.experiment}: no such folder")
    if not list(exp.glob("experiment_state-*.json")):
        raise MabeDataError(f"--experiment {a.experiment}: not a tune.search experiment folder (no "
                            f"experiment_state-*.json: give <storage>/<name>)")
    try:
        sj = exp / "search.json"
        saved = json.loads(sj.read_text())["search"] if sj.exists() else {}
    except (ValueError, KeyError, TypeError) as exc:
        raise MabeDataError(f"unreadable search.json ({exc})", file=exp / "search.json") from None
    from ray.tune import ExperimentAnalysis, ResultGrid

    saved.update(storage=str(exp.parent), name=exp.name)
    if a.gpu_hour_cost is not None:
        saved["gpu_hour_cost"] = a.gpu_hour_cost
    scfg = SearchConfig(**saved)
    grid = ResultGrid(ExperimentAnalysis(str(exp)))
    table = collect(grid, scfg)
    summary = write_all(table, grid, scfg)
    print(summary["report"])
    print(f"wrote {summary['results_csv']} and {len(summary['plots'])} plots")
    print(f"next: python -m ensemble.build --experiment {exp}")
    return 0


if __name__ == "__main__":
    from features.errors import cli_guard

    with cli_guard("python -m tune.results"):
        sys.exit(main())
