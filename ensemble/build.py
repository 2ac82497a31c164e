"""Build an ensemble from a finished search (or plain training runs): rank checkpoints, pick the top K,
compute out-of-fold probabilities, tune thresholds and post-processing on them with the exact
competition metric.

Commands:

    python -m ensemble.build --experiment experiments/<name>            # top 3, best checkpoint per trial
    python -m ensemble.build --experiment experiments/<name> --top-k 5 --strategy diverse --tta off
    python -m ensemble.build --experiment runs/v6 --out ensembles/v6          # a `python -m tune.train` run
    python -m ensemble.build --checkpoints runs/a/best runs/b/best            # explicit checkpoint folders
    python -m ensemble.build --experiment experiments/<name> --list          # only print the ranked table

Input: any folder. Every checkpoint folder below it (model.pt + config.json + metrics.json: Ray Train's
`train-<trial_id>/checkpoint_*`, a run's `best/` and `last/`) is found, identical weights are counted once
(Ray's copy is preferred), and checkpoints are ranked by their validation score (`val/score` in
metrics.json). Ray is never imported: the folders and JSON files are read directly.

Strategies for the top K:
  best-per-trial  the best checkpoint of each trial (run), then the K best trials;
  per-fold        the best checkpoint for each validation fold (one model per fold), K best folds;
  diverse         round-robin over model types (conv_bilstm, tcn, hybrid): the best trial of each type first.
A trial with fold models (one per validation fold, `--cv-folds`) is ranked by the mean of its folds' best
val/score and brings all of them (best-per-trial, diverse): K trials, K x folds members.

Out-of-fold: each member predicts the videos of its own validation fold from the feature cache (sliding
windows, see ensemble.infer: by default the settings its val/score was computed with, derived from its
training window by `InferSettings.for_config`; --window/--stride/--trim override them for every member); a
video's ensemble probabilities are the mean over the members that held it out.
Probabilities are cached in <out>/oof/<member>.npz, so a re-run re-tunes without re-running the models.
Tuning (ensemble.thresholds.tune): per-(lab, action) thresholds with per-action fallbacks for unseen labs,
smoothing window, minimum duration and gap filling; every step is printed with its OOF score next to the
best single member's and the raw (untuned: default threshold 0.5) ensemble's. These settings, tuned on the
full OOF set, are what export and predict use; their score on that same set (in-sample) is optimistic.
The headline is the cross-fitted OOF score (ensemble.thresholds.crossfit): the OOF videos are split into
groups (their cache folds when they cover at least 2, else --crossfit-groups groups dealt by video,
stratified by lab, seeded), each group is decided with settings tuned on the other groups, and all groups are
scored together with the official metric: a number the tuning did not fit. The threshold scope
(--threshold-scope) is per (lab, action) by default; `auto` tries per (lab, action), per action, none and
argmax and keeps the one with the highest cross-fitted score (tuning then runs scopes x groups + 1 times, and
the headline is the best of four: a little optimistic). Measured on the hard twin (README, the lab-aware
ablation under "Training"), auto's pick from a few OOF videos cost held-out score: per (lab, action) was never
worse on the mean and ahead on 26 of the 33 runs where the two differed.
Flip TTA (--tta auto, the default, pair features only): the OOF set is computed with and without the
left/right mirror and the variant with the higher cross-fitted score is kept (both are printed).

Output folder (default ensembles/<input name>): members/<name>/ (model.pt, config.json, metrics.json),
thresholds.json (PostprocessConfig), ensemble.json (members, inference and feature settings, OOF scores:
oof.crossfit, oof.in_sample, oof.argmax, oof.tta), oof/*.npz.
Next: `python -m ensemble.export --ensemble <out> --out bundle/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ensemble.experiment import Candidate, discover, fetch_experiment
from ensemble.infer import InferSettings, flip_permutation, oof_probs, settings_for
from features import files, storage
from features.cli import ArgumentParser, check_range
from features.errors import MabeDataError, cli_guard
from models.checkpoint import FILES as CKPT_FILES, copy_checkpoint

STRATEGIES = ("best-per-trial", "per-fold", "diverse")


def select(cands: list[Candidate], k: int, strategy: str = "best-per-trial") -> list[Candidate]:
    """The members (see the module docstring); candidates must be sorted best first. A trial trained on
    several validation folds (fold models, `--cv-folds`) counts as one: its best checkpoint of each fold,
    ranked by their mean val/score (its objective), all of them members."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if k < 1:
        raise ValueError("top-k must be >= 1")
    best_of: dict[tuple[str, int], Candidate] = {}
    for c in cands:
        best_of.setdefault((c.trial, c.val_fold), c)
    if strategy == "per-fold":
        by_fold: dict[int, Candidate] = {}
        for c in best_of.values():  # still sorted best first
            by_fold.setdefault(c.val_fold, c)
        return list(by_fold.values())[:k]
    folds_of: dict[str, list[Candidate]] = {}
    for c in best_of.values():
        folds_of.setdefault(c.trial, []).append(c)
    mean = {t: float(np.mean([c.score for c in cs])) for t, cs in folds_of.items()}
    trials = sorted(folds_of, key=lambda t: -mean[t])  # stable: ties keep the best-first order
    if strategy == "diverse":
        queues: dict[str, list[str]] = {}
        for t in trials:
            queues.setdefault(folds_of[t][0].model, []).append(t)
        trials = []
        while len(trials) < k and any(queues.values()):
            for q in sorted(queues.values(), key=lambda q: -mean[q[0]] if q else 0.0):
                if q and len(trials) < k:
                    trials.append(q.pop(0))
    return [c for t in trials[:k] for c in sorted(folds_of[t], key=lambda c: c.val_fold)]


def format_table(cands: list[Candidate], chosen: list[Candidate], limit: int = 30) -> str:
    chosen_ids = {id(c) for c in chosen}
    lines = [
        f"{'rank':>4} {'pick':>4} {'val/score':>9} {'epoch':>5} {'fold':>4} {'model':<12} {'trial':<20} "
        f"{'status':<10} checkpoint"
    ]
    for i, c in enumerate(cands[:limit], 1):
        lines.append(
            f"{i:>4} {'*' if id(c) in chosen_ids else '':>4} {c.score:>9.4f} {c.epoch:>5} {c.val_fold:>4} "
            f"{c.model:<12} {c.trial[:20]:<20} {(c.status or '-')[:10]:<10} {c.path}"
        )
    if len(cands) > limit:
        lines.append(f"... {len(cands) - limit} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# OOF items and scores
# --------------------------------------------------------------------------------------------------------


def oof_items(cache, probs_by_video: dict[int, np.ndarray]):
    """ensemble.thresholds.OOFItem per (video, pair) of the given videos (labels and raw whitelist from the
    cache)."""
    from ensemble.thresholds import OOFItem

    idx = cache.index
    items = []
    for v in sorted(probs_by_video):
        probs = probs_by_video[v]
        y = np.asarray(cache.y(v))
        allowed_raw = cache.allowed(v, raw=True)
        lab = str(idx.loc[idx["video_id"] == v, "lab_id"].iloc[0])
        for p, (a, t) in enumerate(cache.pairs(v)):
            items.append(
                OOFItem(
                    lab_id=lab,
                    video_id=int(v),
                    agent=a,
                    target=t,
                    probs=probs[p],
                    labels=np.clip(y[p], 0, None).astype(np.int64),
                    allowed_raw=allowed_raw[p],
                )
            )
    return items


def argmax_score(items) -> float:
    """Exact OOF score of the training-time decision rule (argmax over background + whitelisted classes, no
    post-processing): the reference the trainer's val/score reports, printed beside the 0.5-threshold one."""
    from ensemble.metric import PairFrames, score_frames

    return score_frames(
        [
            PairFrames(
                it.lab_id, it.video_id, it.agent, it.target, it.labels, it.probs.argmax(1), it.allowed_raw
            )
            for it in items
        ]
    )


def average_oof(per_member: dict[str, dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    """Per video: the mean of the members that predicted it (their validation fold)."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for probs in per_member.values():
        for v, p in probs.items():
            sums[v] = p.copy() if v not in sums else sums[v] + p
            counts[v] = counts.get(v, 0) + 1
    return {v: np.clip(sums[v] / counts[v], 0.0, 1.0) for v in sums}


def _default_cache(cands: list[Candidate]) -> str:
    return json.loads((cands[0].path / "config.json").read_text())["data"]["cache"]


def member_settings(chosen: list[Candidate], settings: InferSettings | dict | None) -> list[InferSettings]:
    """Each member's inference settings (ensemble.infer.settings_for: its training config's, or the override);
    invalid ones -> MabeDataError naming the member."""
    out = []
    for c in chosen:
        try:
            out.append(settings_for(json.loads((c.path / "config.json").read_text()), settings))
        except ValueError as exc:
            raise MabeDataError(str(exc), file=c.path) from None
    return out


def oof_members(chosen: list[Candidate], cache, settings: list[InferSettings], out: Path,
                progress: bool = True, variant: str = "") -> dict[str, dict[int, np.ndarray]]:
    """Copy each member to out/members/<name> and compute its OOF probabilities with its settings (cached in
    out/oof/<name><variant>.npz; a variant, e.g. ".tta", is not copied again); {unique member name:
    {video_id: probs}} in the order of `chosen`."""
    per_member: dict[str, dict[int, np.ndarray]] = {}
    for c, st in zip(chosen, settings):
        name = c.name + (f"-f{c.val_fold}" if sum(x.trial == c.trial for x in chosen) > 1 else "")
        while name in per_member:
            name += "_"
        if not variant:
            copy_checkpoint(c.path, out / "members" / name, CKPT_FILES)
        per_member[name] = oof_probs(c.path, cache, st, out / "oof" / f"{name}{variant}.npz",
                                     progress=progress)
    return per_member


def crossfit_groups(cache, videos, n_groups: int = 2, seed: int = 0) -> tuple[dict[int, int], str]:
    """Cross-fit groups of the OOF videos: ({video_id: group}, how). Their cache folds when the videos
    cover at least 2 of them (fold models), else `n_groups` groups dealt by video, stratified by lab, seeded
    (features.cache.assign_folds)."""
    from features.cache import assign_folds

    idx = cache.index
    rows = idx[idx["video_id"].isin([int(v) for v in videos])].drop_duplicates("video_id")
    folds = {int(v): int(f) for v, f in zip(rows["video_id"], rows["fold"])}
    if len(set(folds.values())) >= 2:
        return folds, f"cache folds {sorted(set(folds.values()))}"
    dealt = assign_folds(rows[["video_id", "lab_id"]], n_groups, seed)
    return dealt, f"{n_groups} groups dealt by video (stratified by lab, seed {seed})"


def crossfit_score(cache, per_member: dict[str, dict[int, np.ndarray]], groups: dict[int, int],
                   tune_post: bool, scope: str = "auto"):
    """thresholds.crossfit of the members' averaged OOF probabilities: (CrossFitResult, scope, {scope:
    cross-fitted score}). scope "auto" tries every thresholds.SCOPES and keeps the highest cross-fitted one
    (lab, action, none, argmax: ensemble.thresholds.tune)."""
    from ensemble.thresholds import SCOPES, crossfit

    items = oof_items(cache, average_oof(per_member))
    scopes = (SCOPES if scope == "auto" else (scope,)) if tune_post else ("none",)
    results = {sc: crossfit(items, groups, tune_post=tune_post, scope=sc) for sc in scopes}
    best = max(scopes, key=lambda sc: results[sc].score)  # ties: the first, the finer scope
    spent = sum(r.seconds for r in results.values())
    return replace(results[best], seconds=spent), best, {sc: r.score for sc, r in results.items()}


def flip_available(cache) -> bool:
    """Whether the cache's feature set has an exact left/right mirror (the `pair` set; see ensemble.infer)."""
    try:
        flip_permutation(list(cache.feature_names))
    except ValueError:
        return False
    return True


def cross_fit_choices(chosen, cache, per_member, per_settings, tmp: Path, progress: bool, tune_post: bool,
                      tta: str | None, threshold_scope: str, n_groups: int, seed: int, log=print):
    """What the cross-fitted OOF score decides: the threshold scope (`crossfit_score`) and, with tta "auto",
    flip TTA (the OOF set computed with the mirror too, kept when it scores higher). Returns (CrossFitResult
    of the choice, its seconds summed over every try; (per_member, per_settings, scope, {scope: score},
    tta scores or None, how the groups were made))."""
    groups, how = crossfit_groups(cache, average_oof(per_member), n_groups, seed)
    cf, scope, scope_scores = crossfit_score(cache, per_member, groups, tune_post, threshold_scope)
    tta_scores = None
    if tta == "auto" and not flip_available(cache):
        log("\nflip TTA: not available for this feature set (needs the agent-centred pair set): off")
    elif tta == "auto":
        flip_settings = [replace(st, tta=True) for st in per_settings]
        flipped = oof_members(chosen, cache, flip_settings, tmp, progress, variant=".tta")
        cf_flip, scope_flip, scores_flip = crossfit_score(cache, flipped, groups, tune_post, threshold_scope)
        tta_scores = {"off": cf.score, "on": cf_flip.score, "chosen": cf_flip.score > cf.score}
        log(f"\nflip TTA: cross-fitted OOF {cf.score:.4f} without, {cf_flip.score:.4f} with -> "
            f"{'on' if tta_scores['chosen'] else 'off'}")
        spent = cf.seconds + cf_flip.seconds
        if tta_scores["chosen"]:
            per_member, per_settings, cf = flipped, flip_settings, cf_flip
            scope, scope_scores = scope_flip, scores_flip
        cf = replace(cf, seconds=spent)
    if len(scope_scores) > 1:
        log("\nthreshold scope: cross-fitted OOF " + ", ".join(
            f"{sc} {v:.4f}" for sc, v in scope_scores.items()) + f" -> {scope}")
    return cf, (per_member, per_settings, scope, scope_scores, tta_scores, how)


def score_oof(cache, per_member: dict[str, dict[int, np.ndarray]], tune_post: bool, log=print,
              scope: str = "lab"):
    """Score single members and their average (threshold 0.5 and argmax), tune post-processing on the average;
    returns (PostprocessConfig, oof summary dict) and logs the table."""
    from ensemble.postprocess import PostprocessConfig
    from ensemble.thresholds import evaluate, tune

    default = PostprocessConfig()
    single_items = {n: oof_items(cache, p) for n, p in per_member.items()}
    single = {n: evaluate(it, default) for n, it in single_items.items()}
    single_argmax = {n: argmax_score(it) for n, it in single_items.items()}
    best_single = max(single, key=single.get)
    items = oof_items(cache, average_oof(per_member))
    raw = evaluate(items, default)
    raw_argmax = argmax_score(items)
    log(
        f"\nOOF scores (exact metric, {len(items)} pair sequences, "
        f"{len({it.video_id for it in items})} videos):"
    )
    log(f"  {'':<37} {'threshold 0.5':>13} {'argmax':>8}")
    for n, s in single.items():
        mark = "   <- best single" if n == best_single else ""
        log(f"  single {n:<30} {s:>13.5f} {single_argmax[n]:>8.5f}{mark}")
    log(f"  {'raw ensemble':<37} {raw:>13.5f} {raw_argmax:>8.5f}")
    if tune_post:
        result = tune(items, default, scope=scope)
        cfg, steps = result.config, dict(result.steps)
        log("  tuning steps:")
        log(result.summary())
    else:
        cfg, steps = default, {"defaults": raw}
    tuned = float(steps.get("verified", steps.get("defaults", raw)))
    return cfg, {
        "single": single,
        "best_single": best_single,
        "best_single_score": single[best_single],
        "raw_ensemble": raw,
        "single_argmax": single_argmax,
        "raw_ensemble_argmax": raw_argmax,
        "tuned": tuned,
        "steps": steps,
        "n_items": len(items),
    }


def member_info(name: str, c: Candidate, settings: InferSettings) -> dict:
    """A member's entry in ensemble.json (`infer`: the sliding-window settings predict uses for it)."""
    return {
        "name": name,
        "source": str(c.path),
        "trial": c.trial,
        "epoch": c.epoch,
        "val_score": c.score,
        "model": c.model,
        "val_fold": c.val_fold,
        "sha256": c.sha256,
        "features": json.loads((c.path / "config.json").read_text()).get("features", {}),
        "infer": settings.to_dict(),
    }


def build(
    inputs: list[str | os.PathLike],
    out: str | os.PathLike,
    top_k: int = 3,
    strategy: str = "best-per-trial",
    cache_path: str | None = None,
    settings: InferSettings | dict | None = None,
    tune_post: bool = True,
    progress: bool = True,
    log=print,
    tta: str | None = None,
    crossfit_groups_n: int = 2,
    crossfit_seed: int = 0,
    threshold_scope: str = "lab",
) -> dict:
    """Rank, select, OOF, tune; write the ensemble folder `out`; returns the summary (= ensemble.json).
    settings: None = each member's own (derived from its training config, as its val/score), a dict of
    overrides (window, stride, trim, tta, batch; None = derived), or one InferSettings for every member; each
    member's settings are written to ensemble.json (`members[i].infer`) so predict does the same.
    `out` must be new, empty or an ensemble folder this function wrote (marker `.mabe-tune.json`, or an
    older one with ensemble.json), and contain none of the inputs (MabeDataError otherwise); the folder's lock
    is held while it is written (a second build of the same folder says it waits).
    tta: None = as `settings` say (off by default), "on" / "off" force it, "auto" = compute the OOF set
    with and without flip TTA and keep the one with the higher cross-fitted score (pair features only).
    The tuned score is also cross-fitted (`crossfit_groups`, thresholds.crossfit): oof.crossfit is the
    number to trust, oof.in_sample (= oof.tuned) is tuned and scored on the same videos.
    threshold_scope: "lab" (default), "action", "none" or "argmax" (ensemble.thresholds.tune), or "auto" =
    the one with the highest cross-fitted score (oof.threshold_scope); the deployed thresholds are that
    scope's, tuned on the full OOF."""
    if tta not in (None, "auto", "on", "off"):
        raise ValueError(f"tta must be None, 'auto', 'on' or 'off', got {tta!r}")
    from features.cache import FeatureCache

    t0 = time.perf_counter()
    out = Path(out)
    for src in inputs:
        files.check_not_inside(out, src, data_flag="input")
    files.check_replaceable(out, KIND, legacy=_is_old_ensemble, force_flag=None)
    cands = discover(inputs)
    if not cands:
        raise MabeDataError(
            "no checkpoint folder with model.pt, config.json and metrics.json (val/score) found",
            file=", ".join(map(str, inputs)),
        )
    chosen = select(cands, top_k, strategy)
    per_settings = member_settings(chosen, settings)
    if tta in ("on", "off", "auto"):  # auto: start without, try with
        per_settings = [replace(st, tta=tta == "on") for st in per_settings]
    log(f"{len(cands)} checkpoints found, {len(chosen)} chosen ({strategy}, top {top_k}):")
    log(format_table(cands, chosen))

    cache = FeatureCache(cache_path or _default_cache(chosen))
    with files.waiting_lock(out, f"another ensemble.build of {out}"):
        files.check_replaceable(out, KIND, legacy=_is_old_ensemble, force_flag=None)  # again, under the lock
        # assembled beside `out` and swapped in at the end, under the lock: a kill or a failure leaves the
        # previous ensemble (or none), never members of one with the thresholds of another
        with files.staged_dir(out, lambda p: (p / "ensemble.json").is_file(), locked=True) as tmp:
            files.claim(tmp, KIND)
            if (out / "oof").is_dir():  # cached OOF probabilities are keyed by weights + settings: reused
                shutil.copytree(out / "oof", tmp / "oof")
            (tmp / "members").mkdir()
            per_member = oof_members(chosen, cache, per_settings, tmp, progress)
            cf, (per_member, per_settings, scope, scope_scores, tta_scores, how) = cross_fit_choices(
                chosen, cache, per_member, per_settings, tmp, progress, tune_post, tta, threshold_scope,
                crossfit_groups_n, crossfit_seed, log)
            cf_seconds = cf.seconds
            t_tune = time.perf_counter()
            cfg, oof = score_oof(cache, per_member, tune_post, log, scope)
            t_tune = time.perf_counter() - t_tune
            n_groups = len(cf.configs)
            oof.update({
                "crossfit": cf.score,
                "in_sample": oof["tuned"],
                "argmax": oof["raw_ensemble_argmax"],
                "crossfit_groups": {"n": n_groups, "how": how},
                "threshold_scope": {"chosen": scope, "crossfit": scope_scores},
                "crossfit_seconds": round(cf_seconds, 2),
                "tta": tta_scores,
            })
            runs = f"{len(scope_scores)} x {n_groups} + 1" if not tta_scores else (
                f"2 x {len(scope_scores)} x {n_groups} + 1 (scopes, with and without flip TTA)")
            log(f"  cross-fit over {how}: tuning ran {runs} times, {cf_seconds:.1f}s cross-fit + "
                f"{t_tune:.1f}s on the full OOF")
            summary = {
                "members": [member_info(n, c, st) for n, c, st in zip(per_member, chosen, per_settings)],
                "strategy": strategy,
                "top_k": top_k,
                "infer": common_infer(per_settings),
                "cache": str(cache.path),
                "cache_fingerprint": cache.meta.get("fingerprint"),
                "oof": oof,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            files.write_json(tmp / "thresholds.json", cfg.to_dict())
            files.write_json(tmp / "ensemble.json", summary)
    return summary


def common_infer(settings: list[InferSettings]) -> dict:
    """ensemble.json's top-level `infer`: the members' settings when they all share them, else only what they
    share (tta, batch) with `per_member: true` (each member's own are in its entry)."""
    dicts = [s.to_dict() for s in settings]
    if all(d == dicts[0] for d in dicts):
        return dicts[0]
    return {"tta": dicts[0]["tta"], "batch": dicts[0]["batch"], "per_member": True}


KIND = "ensemble"  # ownership marker kind (features.files.claim)


def _is_old_ensemble(out: Path) -> bool:
    """An ensemble folder written before ownership markers."""
    return (out / "ensemble.json").is_file() or ((out / "members").is_dir() and (out / "oof").is_dir())


def parse_args(argv=None):
    p = ArgumentParser(
        prog="python -m ensemble.build",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rank the checkpoints of a search / run folder, pick the top K, compute out-of-fold "
        "probabilities and tune per-(lab, action) thresholds and post-processing on them.",
        epilog=__doc__.split("Input:", 1)[1],
    )
    p.add_argument(
        "--experiment", help="search folder (tune.search), run folder (tune.train) or checkpoint folder"
    )
    p.add_argument(
        "--checkpoints",
        nargs="+",
        default=[],
        help="explicit checkpoint (or run) folders, instead of or besides --experiment",
    )
    p.add_argument("--top-k", type=int, default=3, help="ensemble size (default 3)")
    p.add_argument(
        "--strategy", choices=STRATEGIES, default="best-per-trial", help="how the K members are chosen"
    )
    p.add_argument("--out", help="ensemble folder (default ensembles/<input folder name>)")
    p.add_argument(
        "--cache", help="feature cache for the OOF videos (default: data.cache of the best member)"
    )
    p.add_argument("--window", type=int, help="sliding window length in frames, for every member (default: "
                   "each member's data.infer_window, else 2 x its training window data.window)")
    p.add_argument("--stride", type=int, help="step between windows (default: window - 2 * trim)")
    p.add_argument("--trim", type=int, help="frames dropped at inner window edges (default: window // 8)")
    p.add_argument("--tta", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="left/right-mirror TTA (pair features): auto (default) computes the OOF set with "
                   "and without it and keeps the higher cross-fitted score; --tta (= on) forces it, "
                   "--tta off skips it (recorded in ensemble.json: predict does the same)")
    p.add_argument("--crossfit-groups", type=int, default=2, help="cross-fit groups when the OOF videos come "
                   "from one cache fold (default 2; with fold models the groups are their folds)")
    p.add_argument("--crossfit-seed", type=int, default=0, help="seed of those groups (default 0)")
    p.add_argument("--threshold-scope", choices=("lab", "action", "none", "argmax", "auto"), default="lab",
                   help="thresholds per (lab, action) with per-action fallbacks (default), per action (labs "
                   "pooled), none (0.5) or argmax (an action beats background, the trainer's rule); auto "
                   "keeps the one of those four with the highest cross-fitted OOF score (on the hard twin "
                   "its pick from a few OOF videos lost held-out score to lab: README)")
    p.add_argument("--no-tune", action="store_true", help="keep default post-processing (threshold 0.5)")
    p.add_argument("--list", action="store_true", help="only print the ranked table")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args(argv)
    check_range(p, args, {"--top-k": 1, "--window": 1, "--stride": 1, "--trim": 0, "--threads": 0,
                          "--crossfit-groups": 2})
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    inputs = ([args.experiment] if args.experiment else []) + list(args.checkpoints)
    names = [str(x).rstrip("/").rsplit("/", 1)[-1] if storage.is_remote(x) else Path(x).resolve().name
             for x in inputs]
    inputs = [fetch_experiment(x) if storage.is_remote(x) else x for x in inputs]
    if not inputs:
        raise MabeDataError("give --experiment PATH or --checkpoints DIR ...")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.list:
        cands = discover(inputs)
        print(format_table(cands, select(cands, args.top_k, args.strategy) if cands else [], limit=10_000))
        return {}
    settings = {"window": args.window, "stride": args.stride, "trim": args.trim}
    if args.window is not None:  # refuse an impossible override before any work
        try:
            InferSettings.derive(args.window, args.stride, args.trim)
        except ValueError as exc:
            raise MabeDataError(str(exc)) from None
    out = args.out or str(Path("ensembles") / names[0])
    s = build(inputs, out, args.top_k, args.strategy, args.cache, settings, tune_post=not args.no_tune,
              tta=args.tta, crossfit_groups_n=args.crossfit_groups, crossfit_seed=args.crossfit_seed,
              threshold_scope=args.threshold_scope)
    o = s["oof"]
    scope = o["threshold_scope"]["chosen"]
    what = (f"threshold scope {scope}, tuned on other folds" if not args.no_tune
            else "--no-tune: default thresholds")
    print(
        f"\n[ensemble.build] {len(s['members'])} members in {s['seconds']}s -> {out}\n"
        f"  cross-fitted OOF score {o['crossfit']:.4f}: {what}, the number to trust\n"
        f"  in-sample tuned OOF {o['in_sample']:.4f}: tuned and scored on the same videos, optimistic\n"
        f"  untuned OOF {o['argmax']:.4f}: argmax, the rule of val/score_argmax (threshold 0.5: "
        f"{o['raw_ensemble']:.4f}; best single member {o['best_single_score']:.4f})"
    )
    if o["tta"]:
        print(f"  flip TTA {'on' if o['tta']['chosen'] else 'off'}: cross-fitted {o['tta']['on']:.4f} with, "
              f"{o['tta']['off']:.4f} without")
    print(f"next: python -m ensemble.export --ensemble {out} --out bundle/")
    return s


if __name__ == "__main__":
    with cli_guard("python -m ensemble.build"):
        main(sys.argv[1:])
