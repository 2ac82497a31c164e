"""`--like-real [--fraction F]`: a twin with the real training set's shape, scaled by F.

The packaged train.csv holds 848 annotated videos (19 labs, 21.3 M frames, 45.0 M whitelisted pair-frames).
The twin keeps round(F x 848) of them, each lab's share by largest remainder (every lab with a positive
quota keeps at least its share, rounded), and within a lab a systematic sample over the lab's videos sorted
by length (a seeded offset), so the video-length distribution, fps, mice counts, body-part sets and
whitelists (hence the action mix) of the real set are kept. Each twin video copies its real row and has
the real video's own length in frames (video_duration_sec x frames_per_second).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import MabeDataError
from features.synth.meta import META_GZ, whitelist

DEFAULT_FRACTION = 0.1


def real_frames(meta: pd.DataFrame) -> pd.Series:
    """Frames of each metadata row (video_duration_sec x frames_per_second, rounded)."""
    return (meta["video_duration_sec"] * meta["frames_per_second"]).round().astype(np.int64)


def annotated(meta: pd.DataFrame) -> pd.DataFrame:
    return meta[meta["behaviors_labeled"].notna()]


def real_totals(meta: pd.DataFrame) -> dict:
    """videos, frames and whitelisted pair-frames of the real annotated training set."""
    ann = annotated(meta)
    frames = real_frames(ann)
    pairs = ann["behaviors_labeled"].map(lambda raw: len({(a, t) for a, t, _ in whitelist(raw)}))
    return {"videos": len(ann), "frames": int(frames.sum()), "pair_frames": int((frames * pairs).sum())}


def quotas(counts: pd.Series, fraction: float) -> dict[str, int]:
    """Videos per lab: round(fraction x total) dealt by largest remainder of fraction x lab count."""
    total = max(1, int(round(fraction * counts.sum())))
    exact = counts.astype(float) * fraction
    base = np.floor(exact).astype(int)
    left = total - int(base.sum())
    order = sorted(counts.index, key=lambda lab: (-(exact[lab] - base[lab]), -counts[lab], lab))
    for lab in order[:max(0, left)]:
        base[lab] += 1
    return {lab: int(base[lab]) for lab in sorted(counts.index) if base[lab] > 0}


def like_real_rows(meta: pd.DataFrame, fraction: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(metadata row position, frames) of each twin training video, labs in name order."""
    if not 0 < fraction <= 1:
        raise MabeDataError(f"--fraction must be in (0, 1] (got {fraction})", file=META_GZ)
    ann = annotated(meta)
    frames = real_frames(meta)
    out = []
    for lab, k in quotas(ann["lab_id"].value_counts(), fraction).items():
        rows = ann.index[ann["lab_id"] == lab].to_numpy()
        rows = rows[np.lexsort((rows, frames[rows].to_numpy()))]  # by length, then row
        pick = np.floor((np.arange(k) + rng.random()) * len(rows) / k).astype(int)
        out += [(int(rows[i]), int(frames[rows[i]])) for i in pick]
    return out


def format_scale(s: dict) -> str:
    """The twin's own counts next to F x the real set's, so a user sees F applied."""
    real, f = s["like_real"]["real"], s["like_real"]["fraction"]
    return (f"  like-real at F={f:g}: {s['videos']} videos (real {real['videos']} x F = "
            f"{real['videos'] * f:,.1f}), {s['frames']:,} frames (real {real['frames']:,} x F = "
            f"{real['frames'] * f:,.0f}), {s['pair_frames']:,} pair-frames "
            f"(real {real['pair_frames']:,} x F = "
            f"{real['pair_frames'] * f:,.0f})")
