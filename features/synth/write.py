"""The dataset writer: pick real metadata rows, make every video, and write the Kaggle layout (parquet, CSV,
sample submission, ground truth) plus the `synth.json` marker, each file atomically (features.files)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import MabeDataError
from features.files import atomic_file, write_text
from features.io import SUBMISSION_COLUMNS
from features.synth.meta import (
    DEFAULT_FRAMES,
    DEFAULT_LABS,
    DEFAULT_TEST_VIDEOS,
    DEFAULT_VIDEOS,
    META_GZ,
    annotated_labs,
    n_mice,
    real_metadata,
    whitelist,
)
from features.synth.hard import DIFFICULTIES, LabStyle, hard_lengths, lab_style
from features.synth.like_real import like_real_rows, real_totals
from features.synth.video import VideoResult, make_video

MARKER = "synth.json"  # written last; tells a synthetic folder (safe to regenerate) from real data
_OWN_DIRS = ("train_tracking", "test_tracking", "train_annotation")
SOLUTION_COLUMNS = ("video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame", "lab_id",
                    "behaviors_labeled")


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)


def annotation_table(events) -> pa.Table:
    cols = list(zip(*events)) if events else [[], [], [], [], []]
    return pa.table({
        "agent_id": pa.array(np.asarray(cols[0], dtype=np.int64)),
        "target_id": pa.array(np.asarray(cols[1], dtype=np.int64)),
        "action": pa.array(list(cols[2]), type=pa.string()),
        "start_frame": pa.array(np.asarray(cols[3], dtype=np.int64)),
        "stop_frame": pa.array(np.asarray(cols[4], dtype=np.int64)),
    })


def _pick_rows(meta: pd.DataFrame, labs: list[str], n: int, offset: dict[str, int],
               rng: np.random.Generator) -> list[int]:
    """Row positions of real annotated rows: labs round-robin, each lab's rows in a seeded order (the row
    with the most mice and filled cells first, so that with AdaptableSnail in the labs every column has a
    value and pandas infers the real dtypes), cycling when a lab runs out."""
    out = []
    for i in range(n):
        lab = labs[i % len(labs)]
        rows = offset.setdefault(f"rows:{lab}", None)
        if rows is None:
            cand = meta.index[(meta["lab_id"] == lab) & meta["behaviors_labeled"].notna()].to_numpy()
            order = cand[rng.permutation(len(cand))]
            richness = [(n_mice(meta.loc[r], whitelist(meta.loc[r, "behaviors_labeled"])),
                         int(meta.loc[r].notna().sum())) for r in order]
            first = max(range(len(order)), key=lambda i: (richness[i], -i))
            order = np.concatenate([[order[first]], np.delete(order, first)])
            offset[f"rows:{lab}"] = rows = order
        k = offset.get(lab, 0)
        out.append(int(rows[k % len(rows)]))
        offset[lab] = k + 1
    return out


def _solution_rows(video: VideoResult, raw_whitelist: str) -> list[dict]:
    return [{"video_id": video.video_id, "agent_id": f"mouse{a}",
             "target_id": "self" if a == t else f"mouse{t}", "action": act, "start_frame": s, "stop_frame": e,
             "lab_id": video.lab_id, "behaviors_labeled": raw_whitelist}
            for a, t, act, s, e in video.events]


def _check_args(meta: pd.DataFrame, labs, n_videos: int, test_videos: int, n_frames: int,
                difficulty: str = "easy") -> list[str]:
    known = annotated_labs(meta, public=True)
    labs = list(DEFAULT_LABS if labs is None else labs)
    bad = [lab for lab in labs if lab not in known]
    if bad or not labs:
        raise MabeDataError(f"--labs: unknown or unannotated lab(s) {bad or labs}; choose from "
                            f"{', '.join(known)}", file=META_GZ)
    if n_videos < 1 or test_videos < 0 or n_frames < 100:
        raise MabeDataError(f"need videos >= 1, test videos >= 0, frames >= 100 (got {n_videos}, "
                            f"{test_videos}, {n_frames})")
    if difficulty not in DIFFICULTIES:
        raise MabeDataError(f"--difficulty: {difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
    return labs


def _plan(meta: pd.DataFrame, labs: list[str], n_videos: int, test_videos: int, n_frames: int, seed: int,
          difficulty: str = "easy", like_real: float | None = None):
    """Per video (train first, then test): (split, metadata row position, video id, frames, generator).
    like_real: the training videos are `like_real_rows` (real rows and their real lengths; n_videos and
    labs are ignored for them), test videos are dealt from the twin's labs as usual."""
    meta_ss, train_ss, test_ss = np.random.SeedSequence(seed).spawn(3)
    mrng = np.random.default_rng(meta_ss)
    offsets: dict = {}
    real_lengths = None
    if like_real is not None:
        picked = like_real_rows(meta, like_real, mrng)
        rows, real_lengths = [r for r, _ in picked], [n for _, n in picked]
        n_videos = len(rows)
        labs = sorted({str(meta.loc[r, "lab_id"]) for r in rows})
    else:
        rows = _pick_rows(meta, labs, n_videos, offsets, mrng)
    rows += _pick_rows(meta, labs, test_videos, offsets, mrng)
    taken = set(meta["video_id"].tolist())
    ids = []
    while len(ids) < n_videos + test_videos:
        vid = int(mrng.integers(10_000, 2**31 - 1))
        if vid not in taken:
            taken.add(vid)
            ids.append(vid)
    if difficulty == "hard":  # longer, more variable videos
        lengths = hard_lengths(n_frames, n_videos + test_videos, mrng)
    else:
        lengths = [int(round(n_frames * u)) for u in mrng.uniform(0.8, 1.2, n_videos + test_videos)]
    if real_lengths is not None:
        lengths[:n_videos] = real_lengths
    seeds = train_ss.spawn(n_videos) + test_ss.spawn(test_videos)
    splits = ["train"] * n_videos + ["test"] * test_videos
    return list(zip(splits, rows, ids, lengths, seeds))


def _make_one(split: str, row: pd.Series, vid: int, length: int, ss, fps_quirk: bool,
              style: LabStyle | None, out: Path | None = None):
    """(split, metadata row with its new id and duration, VideoResult) of one planned video; with `out`,
    its parquet files are written here and the result comes back without its tracking table (memory)."""
    row = row.copy()
    res = make_video(row, vid, length, np.random.default_rng(ss), fps_quirk=fps_quirk, style=style)
    row["video_id"] = vid
    row["video_duration_sec"] = round(length / float(row["frames_per_second"]), 2)
    if out is not None:
        _write_parquet(res.tracking, out / f"{split}_tracking" / res.lab_id / f"{vid}.parquet")
        if split == "train" and res.events:  # nothing happened -> no file (like PleasantMeerkat 1375833299)
            path = out / "train_annotation" / res.lab_id / f"{vid}.parquet"
            _write_parquet(annotation_table(res.events), path)
        res = dataclasses.replace(res, tracking=res.tracking.slice(0, 0))
    return split, row, res


def _make_videos(meta: pd.DataFrame, plan: list, fps_quirk: bool, styles: dict[str, LabStyle] | None,
                 out: Path | None = None, workers: int = 1):
    """(split, metadata row with its new id and duration, VideoResult) of every planned video, in order
    (`workers` > 1: made in that many processes; same results)."""
    jobs = [(split, meta.loc[pos], vid, length, ss, fps_quirk,
             None if styles is None else styles[str(meta.loc[pos, "lab_id"])], out)
            for split, pos, vid, length, ss in plan]
    if workers <= 1:
        for job in jobs:
            yield _make_one(*job)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        yield from pool.map(_make_one, *zip(*jobs))


def videos(n_videos: int = DEFAULT_VIDEOS, n_frames: int = DEFAULT_FRAMES, seed: int = 0,
           labs: list[str] | tuple[str, ...] | None = None, test_videos: int = DEFAULT_TEST_VIDEOS,
           fps_quirk: bool = True, difficulty: str = "easy", lab_contrast: float = 1.0):
    """The videos `generate` would write with these arguments, in memory: yields (split, metadata row,
    VideoResult) (with the planted episodes, e.g. for an oracle score); writes nothing."""
    meta = real_metadata()
    labs = _check_args(meta, labs, n_videos, test_videos, n_frames, difficulty)
    plan = _plan(meta, labs, n_videos, test_videos, n_frames, seed, difficulty)
    yield from _make_videos(meta, plan, fps_quirk, _styles(labs, seed, difficulty, lab_contrast))


def _styles(labs: list[str], seed: int, difficulty: str, contrast: float = 1.0) -> dict[str, LabStyle] | None:
    return {lab: lab_style(lab, seed, contrast) for lab in labs} if difficulty == "hard" else None


def _write_videos(out: Path, meta: pd.DataFrame, plan: list, progress: bool, fps_quirk: bool,
                  styles: dict[str, LabStyle] | None = None, workers: int = 1) -> dict:
    """Make and write every video; returns {split: [(metadata row, VideoResult without tracking)]}."""
    stats = {"train": [], "test": []}
    made = _make_videos(meta, plan, fps_quirk, styles, out, workers)
    try:
        from tqdm import tqdm
        bar = tqdm(made, total=len(plan), desc="synth videos", unit="video", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = made
    for split, row, res in bar:
        stats[split].append((row, res))
    return stats


def _write_tables(out: Path, meta: pd.DataFrame, stats: dict) -> None:
    """train.csv, test.csv (real dtypes), test_solution.csv and sample_submission.csv."""
    for split in ("train", "test"):
        rows = [r for r, _ in stats[split]]
        df = pd.DataFrame(rows, columns=meta.columns) if rows else meta.iloc[:0].copy()
        df = df.astype(meta.dtypes.to_dict())
        _write_csv(df, out / f"{split}.csv")
    sol = [r for row, res in stats["test"] for r in _solution_rows(res, row["behaviors_labeled"])]
    _write_csv(pd.DataFrame(sol, columns=list(SOLUTION_COLUMNS)), out / "test_solution.csv")
    sub = []
    for row, res in stats["test"]:
        wl = whitelist(row["behaviors_labeled"])
        a, t, act = wl[0] if wl else (1, 2, "sniff")
        sub.append({"row_id": len(sub), "video_id": res.video_id, "agent_id": f"mouse{a}",
                    "target_id": "self" if a == t else f"mouse{t}", "action": act, "start_frame": 0,
                    "stop_frame": 1})
    _write_csv(pd.DataFrame(sub, columns=list(SUBMISSION_COLUMNS)), out / "sample_submission.csv")


def _share(videos: list[VideoResult]) -> float:
    """Labelled share of whitelisted (pair, frame) cells (self pairs included)."""
    return sum(v.positive_frames for v in videos) / max(1, sum(v.pair_frames for v in videos))


def _summary(out: Path, seed: int, stats: dict, t0: float) -> dict:
    train = [res for _, res in stats["train"]]
    test = [res for _, res in stats["test"]]
    per_action = Counter(act for res in train for _, _, act, _, _ in res.events)
    return {
        "out": str(out), "seed": seed, "videos": len(train), "test_videos": len(test),
        "labs": dict(Counter(res.lab_id for res in train)),
        "frames": sum(res.n_frames for res in train), "test_frames": sum(res.n_frames for res in test),
        "pair_frames": sum(res.pair_frames for res in train),
        "intervals": dict(sorted(per_action.items())),
        "test_intervals": sum(len(res.events) for res in test),
        "positive_share": _share(train),
        "positive_share_by_lab": {lab: _share([r for r in train if r.lab_id == lab])
                                  for lab in sorted({r.lab_id for r in train})},
        "overlaps": sum(res.overlaps for res in train + test),
        "videos_without_annotation": sum(1 for res in train if not res.events),
        "tracking_rows": sum(res.tracking_rows for res in train + test),
        "whole_missing_frames": sum(res.whole_missing for res in train + test),
        "out_of_frame_rows": sum(res.out_of_frame for res in train + test),
        "id_swaps": sum(res.id_swaps for res in train + test),
        "scenes": sum(res.scenes for res in train + test),
        "scenes_aborted": sum(res.aborted for res in train + test),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _prepare(out: Path, force: bool = False) -> None:
    """Make out ready: refuse a file, and a folder with Kaggle files but no marker (real data?) unless
    `force`; in a folder we wrote before (or a forced one), drop our parquet folders so no stale videos of an
    earlier run stay behind (a cache folder or anything else in it is left alone)."""
    if out.exists() and not out.is_dir():
        raise MabeDataError(f"--out {out} is a file, not a folder: choose a folder path")
    if (out / MARKER).is_file() or force:
        (out / MARKER).unlink(missing_ok=True)
        for name in _OWN_DIRS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    elif any((out / n).exists() for n in ("train.csv", "test.csv") + _OWN_DIRS):
        raise MabeDataError(f"refusing to overwrite: the folder holds Kaggle-layout files but no {MARKER}, "
                            f"so it was not written by features.synth (real data?); choose an empty --out "
                            f"(or pass --force)",
                            file=out)
    out.mkdir(parents=True, exist_ok=True)


def generate(out_dir: str | Path, n_videos: int = DEFAULT_VIDEOS, n_frames: int = DEFAULT_FRAMES,
             seed: int = 0, labs: list[str] | tuple[str, ...] | None = None,
             test_videos: int = DEFAULT_TEST_VIDEOS, progress: bool = False, fps_quirk: bool = True,
             force: bool = False, difficulty: str = "easy", like_real: float | None = None,
             workers: int = 1, lab_contrast: float = 1.0) -> dict:
    """Write a synthetic dataset in the Kaggle layout into out_dir and return a summary dict.

    n_frames is the mean length; each video gets n_frames x U(0.8, 1.2) frames. Labs are dealt round-robin.
    The same arguments always write the same data. fps_quirk: see `make_video` (on by default, as in the real
    data: the 25-fps AdaptableSnail labels are written on a 30-fps frame axis, which the feature pipeline
    maps back, features/quirks.py; off = their labels on their own axis, the older generator, whose
    caches need `features.build --no-fix-label-fps`). force: write into a folder with Kaggle-layout files
    but no synth.json marker (otherwise refused). difficulty: "easy" (the default: the original generator,
    byte-identical for a seed) or "hard" (features.synth.hard: lab annotation styles, look-alikes, long
    tails; its summary and synth.json say so). like_real: a fraction F in (0, 1]: the training videos are
    the real set's shape scaled by F (features.synth.like_real; n_videos and labs are then unused: the
    test videos are dealt from the twin's labs, n_frames x U(0.8, 1.2) long); the summary's "like_real"
    holds F and the real totals. workers: processes making videos (same files). lab_contrast: hard mode's
    spread between labs' styles (features.synth.hard.lab_style; 1 = the default twin).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    meta = real_metadata()
    labs = _check_args(meta, labs, n_videos, test_videos, n_frames, difficulty)
    _prepare(out, force)
    plan = _plan(meta, labs, n_videos, test_videos, n_frames, seed, difficulty, like_real)
    if like_real is not None:
        labs = sorted({str(meta.loc[pos, "lab_id"]) for _, pos, _, _, _ in plan})
    stats = _write_videos(out, meta, plan, progress, fps_quirk, _styles(labs, seed, difficulty, lab_contrast),
                          workers)
    _write_tables(out, meta, stats)
    summary = _summary(out, seed, stats, t0)
    args = {"n_videos": n_videos, "n_frames": n_frames, "seed": seed, "labs": labs,
            "test_videos": test_videos, "fps_quirk": fps_quirk}
    if like_real is not None:
        args = {"like_real": like_real, "n_frames": n_frames, "seed": seed, "test_videos": test_videos,
                "fps_quirk": fps_quirk}
        summary["like_real"] = {"fraction": like_real, "real": real_totals(meta)}
    if difficulty != "easy":  # easy keeps the original marker bytes
        args["difficulty"] = difficulty
        summary["difficulty"] = difficulty
        if lab_contrast != 1.0:  # contrast 1 keeps the hard twin's marker bytes
            args["lab_contrast"] = summary["lab_contrast"] = lab_contrast
        every = [res for split in stats.values() for _, res in split]
        summary["hard"] = {"decoys": sum(r.decoys for r in every),
                           **{k: sum(r.dropped.get(k, 0) for r in every)
                              for k in ("missed", "too_far", "too_short")}}
    write_text(out / MARKER, json.dumps({"generator": "features.synth", "args": args,
                                         **{k: v for k, v in summary.items() if k not in ("seconds", "out")}},
                                        indent=1, sort_keys=True))
    return summary
