"""Training data from the feature cache: in-RAM pair tables, vectorised window gather, prefetch threads.

Why this shape: a training step on CPU/GPU is milliseconds, so the data path must be a few numpy fancy-index
operations on one contiguous array (no per-window Python loop, no DataLoader worker processes). A small
cache is loaded whole into RAM as `x[N_frames, F]` with per-pair offsets; a window is `offset + start +
arange(W)`. A cache larger than `data.in_memory_gb` stays in its read-only per-video memmaps (the OS page
cache holds the bytes once for every trial on the node: no per-trial copy); a batch is then gathered with
one fancy-index read per video in the batch (index arrays [B_v, W], no loop over windows). A float16 cache
stays float16 in RAM or on disk and each batch is upcast to float32. Batches are produced ahead by
`data.prefetch_workers` threads (numpy copies release the GIL), in order; the trainer measures the time
it waits.

Sharding under DDP: the epoch's global list of windows is drawn from `seed + epoch` (identical on every
rank) and rank r takes windows r, r + world, ... (what DistributedSampler does).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.errors import MabeDataError
from features.labels import NUM_CLASSES

IGNORE = -100  # label of frames that contribute no loss (padding, classes outside the pair's whitelist)
TAIL = 4096  # zero frames after the last pair in RAM, so a window starting near the end is still one slice


@dataclass
class PairTable:
    """All frames of a set of (video, agent, target) pairs, flattened: pair i is
    x[start[i]:start[i] + length[i]]."""

    x: np.ndarray | list  # float32/float16 [N, F] in RAM, or a list of per-pair memmap views [T_i, F]
    y: np.ndarray  # int64 [N], IGNORE where the class is not whitelisted for the pair
    start: np.ndarray  # int64 [P]
    length: np.ndarray  # int64 [P]
    allowed: np.ndarray  # bool [P, 38] (normalised whitelist, background True)
    allowed_raw: np.ndarray  # bool [P, 38] (what the official metric accepts)
    video_id: np.ndarray  # int64 [P]
    lab_id: np.ndarray  # object [P]
    agent: np.ndarray  # int64 [P]
    target: np.ndarray  # int64 [P]
    # memmap tables only: the per-video memmaps [P_v, T_v, F] and, per pair, its video (index into
    # `videos`) and its row in that video's array
    videos: list = field(default_factory=list)
    pair_video: np.ndarray | None = None  # int64 [P]
    pair_row: np.ndarray | None = None  # int64 [P]
    # a fold's view of a shared in-RAM table (`subset_pairs`): pair i's features are x[x_start[i]:...]
    # (its labels stay at y[start[i]:...], its own copy); None = start
    x_start: np.ndarray | None = None
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # per-table maps (_lab_frame_maps)

    @property
    def n_frames(self) -> int:
        return int(self.length.sum())

    @property
    def in_memory(self) -> bool:
        return isinstance(self.x, np.ndarray)

    @property
    def x_rows(self) -> np.ndarray:
        """int64 [P]: the row of x where each pair's features start (in-RAM tables)."""
        return self.start if self.x_start is None else self.x_start

    def pair_x(self, i: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """float32 [hi - lo, F]: frames lo..hi (default all) of pair i (a view when stored as float32)."""
        n = int(self.length[i])
        hi = n if hi is None else min(int(hi), n)
        if not self.in_memory:
            return np.asarray(self.x[i][lo:hi], dtype=np.float32)
        s = int(self.x_rows[i])
        return np.asarray(self.x[s + lo:s + hi], dtype=np.float32)

    def pair_y(self, i: int) -> np.ndarray:
        s, n = int(self.start[i]), int(self.length[i])
        return self.y[s:s + n]


def open_cache(path):
    """features.cache.FeatureCache at `path` (an s3:// or gs:// cache is staged node-locally once), or a
    MabeDataError telling how to build it."""
    from features import storage
    from features.cache import FeatureCache

    if storage.is_remote(path):
        return FeatureCache(path)
    p = Path(path)
    if not (p / "index.parquet").is_file():
        raise MabeDataError("no feature cache here; build it with `python -m features.build` "
                            "(or run `python -m tune.train --smoke-test`)", file=p)
    return FeatureCache(p)


def select_rows(cache, val_fold: int, labs: list[str] | None = None):
    """(train rows, val rows) of the cache index: labelled videos only, val = fold `val_fold`."""
    idx = cache.index
    idx = idx[idx["split"] == "train"] if "split" in idx else idx
    if labs:
        idx = idx[idx["lab_id"].astype(str).isin(labs)]
    if len(idx) == 0:
        raise MabeDataError(f"no labelled pairs (labs filter {labs or 'none'})",
                            file=getattr(cache, "path", None))
    if val_fold < 0:
        return idx, idx.iloc[:0]
    val = idx[idx["fold"] == val_fold]
    train = idx[idx["fold"] != val_fold]
    if len(val) == 0 or len(train) == 0:
        folds = sorted(idx["fold"].unique().tolist())
        raise MabeDataError(f"val_fold {val_fold} leaves an empty train or val set (folds present: {folds})",
                            file=getattr(cache, "path", None))
    return train, val


def load_pairs(cache, rows, in_memory_gb: float = 8.0, shuffle_labels: bool = False,
               seed: int = 0) -> PairTable:
    """Read the pairs listed in `rows` (cache index rows) into a PairTable.

    shuffle_labels: each pair's label sequence is rolled by a random offset (between 1/4 and 3/4 of its
    length), which keeps label statistics and whitelists but breaks their link to the features.
    """
    rows = rows.sort_values(["video_id", "pair"])
    F = int(cache.num_features)
    dtype = np.dtype(getattr(cache, "dtype", "float32"))  # storage dtype, kept in RAM too
    n_total = int(rows["n_frames"].sum())
    in_ram = n_total * F * dtype.itemsize <= in_memory_gb * 2**30
    xs, ys, lengths, videos, pair_video, pair_row = [], [], [], [], [], []
    rng = np.random.default_rng(seed + 7919)
    for vid, grp in rows.groupby("video_id", sort=False):
        xv, yv = cache.x(int(vid)), cache.y(int(vid))  # [P, T, F] memmap, [P, T]
        videos.append(xv)
        for p in grp["pair"].to_numpy():
            y = np.asarray(yv[p], dtype=np.int64)
            if shuffle_labels and len(y) > 3:
                y = np.roll(y, int(rng.integers(len(y) // 4, 3 * len(y) // 4 + 1)))
            xs.append(np.asarray(xv[p], dtype=dtype) if in_ram else xv[p])
            ys.append(y)
            lengths.append(len(y))
            pair_video.append(len(videos) - 1)
            pair_row.append(int(p))
    length = np.asarray(lengths, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    allowed = np.stack([np.asarray(a, dtype=bool) for a in rows["allowed"]])
    allowed_raw = np.stack([np.asarray(a, dtype=bool) for a in rows["allowed_raw"]])
    allowed[:, 0] = True
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    pair_of_frame = np.repeat(np.arange(len(length)), length)
    # non-whitelisted -> no loss
    y = np.where(allowed[pair_of_frame, np.clip(y, 0, NUM_CLASSES - 1)], y, IGNORE)
    mm = {}
    if in_ram:  # one contiguous array + TAIL zero frames (see gather)
        x = np.zeros((int(length.sum()) + TAIL, F), dtype)
        np.concatenate(xs, out=x[: int(length.sum())]) if xs else None
        y = np.concatenate([y, np.full(TAIL, IGNORE, np.int64)])
    else:
        x = xs
        mm = {"videos": videos, "pair_video": np.asarray(pair_video, np.int64),
              "pair_row": np.asarray(pair_row, np.int64)}
    return PairTable(x=x, y=y, start=start, length=length, allowed=allowed, allowed_raw=allowed_raw,
                     video_id=rows["video_id"].to_numpy(np.int64),
                     lab_id=rows["lab_id"].astype(str).to_numpy(),
                     agent=rows["agent"].to_numpy(np.int64), target=rows["target"].to_numpy(np.int64), **mm)


def subset_pairs(table: PairTable, idx, shuffle_labels: bool = False, seed: int = 0) -> PairTable:
    """Pairs `idx` (ascending) of a loaded table as a table of their own that shares its features (no copy of
    x: in RAM through `x_start`, memmap through the same views) and copies their labels; equal to
    `load_pairs` of those pairs' rows, shuffle_labels and seed included (data.cv_folds > 1: the K fold runs
    share one load of all pairs)."""
    idx = np.asarray(idx, dtype=np.int64)
    length = table.length[idx]
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    ys = [table.y[int(table.start[i]):int(table.start[i]) + int(n)] for i, n in zip(idx, length)]
    if shuffle_labels:  # load_pairs' roll, same draws (whitelist masking and rolling commute)
        rng = np.random.default_rng(seed + 7919)
        ys = [np.roll(y, int(rng.integers(len(y) // 4, 3 * len(y) // 4 + 1))) if len(y) > 3 else y
              for y in ys]
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    common = dict(start=start, length=length, allowed=table.allowed[idx], allowed_raw=table.allowed_raw[idx],
                  video_id=table.video_id[idx], lab_id=table.lab_id[idx], agent=table.agent[idx],
                  target=table.target[idx])
    if table.in_memory:
        return PairTable(x=table.x, y=np.concatenate([y, np.full(TAIL, IGNORE, np.int64)]),
                         x_start=table.x_rows[idx], **common)
    return PairTable(x=[table.x[i] for i in idx], y=y, videos=table.videos, pair_video=table.pair_video[idx],
                     pair_row=table.pair_row[idx], **common)


def segment_bounds(n_frames: int, length: int, fraction: float, rng: np.random.Generator) -> list[tuple]:
    """[(lo, hi)]: about `fraction` of n_frames as round(fraction * n_frames / length) >= 1 non-overlapping
    segments of `length` frames at random starts (uniform over the placements), in order; the whole
    sequence when they would cover it. E.g. 1000 frames, length 100, fraction 0.3 -> 3 segments, 300
    frames."""
    n = max(1, int(np.floor(fraction * n_frames / length + 0.5)))
    if n * length >= n_frames:
        return [(0, int(n_frames))]
    gaps = np.sort(rng.integers(0, n_frames - n * length + 1, size=n))  # free frames before each segment
    return [(int(g) + k * length, int(g) + (k + 1) * length) for k, g in enumerate(gaps)]


@dataclass
class SegmentTable:
    """A validation sample (`sample_segments`): one row per (pair, segment), with the attributes evaluation
    reads from a PairTable (video_id, length, lab_id, agent, target, allowed, allowed_raw, pair_x, pair_y),
    the frames sliced from `base`. Rows of one pair share its (video_id, agent, target)."""

    base: PairTable
    pair: np.ndarray  # int64 [R] the base pair of each row
    lo: np.ndarray  # int64 [R] first frame (in the pair)
    hi: np.ndarray  # int64 [R] end frame

    def __post_init__(self):
        b, p = self.base, self.pair
        self.length = self.hi - self.lo
        self.video_id, self.lab_id = b.video_id[p], b.lab_id[p]
        self.agent, self.target = b.agent[p], b.target[p]
        self.allowed, self.allowed_raw = b.allowed[p], b.allowed_raw[p]

    @property
    def n_frames(self) -> int:
        return int(self.length.sum())

    def pair_x(self, i: int) -> np.ndarray:
        return self.base.pair_x(int(self.pair[i]), int(self.lo[i]), int(self.hi[i]))

    def pair_y(self, i: int) -> np.ndarray:
        return self.base.pair_y(int(self.pair[i]))[int(self.lo[i]):int(self.hi[i])]


def sample_segments(table: PairTable, fraction: float, length: int, seed: int) -> PairTable | SegmentTable:
    """The fixed validation sample of `data.val_sample` = fraction: per pair, `segment_bounds` drawn from
    (seed, video_id, pair length), so a video's equally long pairs get the same segments and the sample is
    the same on every call; fraction >= 1: `table` itself."""
    if fraction >= 1:
        return table
    pair, lo, hi = [], [], []
    for i, (vid, n) in enumerate(zip(table.video_id, table.length)):
        rng = np.random.default_rng([int(seed), int(vid), int(n), 0x5EC])
        for a, b in segment_bounds(int(n), int(length), fraction, rng):
            pair.append(i)
            lo.append(a)
            hi.append(b)
    return SegmentTable(table, np.asarray(pair, np.int64), np.asarray(lo, np.int64), np.asarray(hi, np.int64))


def feature_stats(table: PairTable, max_frames: int = 200_000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over (a sample of) the training frames, NaN-aware."""
    rng = np.random.default_rng(seed)
    n = table.n_frames
    if table.in_memory:
        idx = np.sort(rng.choice(n, size=min(n, max_frames), replace=False))
        if table.x_start is not None:  # the table's frame k -> its row in the shared x
            pair = np.searchsorted(table.start, idx, side="right") - 1
            idx = table.x_start[pair] + idx - table.start[pair]
        sample = np.asarray(table.x[idx], dtype=np.float32)
    else:
        step = max(1, n // max_frames)
        sample = np.concatenate([table.pair_x(i)[::step] for i in range(len(table.length))])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(sample, axis=0)
            std = np.nanstd(sample, axis=0)
    return np.nan_to_num(mean).astype(np.float32), np.nan_to_num(std, nan=1.0).astype(np.float32)


def class_frequencies(table: PairTable) -> np.ndarray:
    """Fraction of (loss-bearing) training frames per class, float64 [38]."""
    y = table.y[table.y >= 0]
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def class_weights(freq: np.ndarray, bg_weight: float, power: float, cap: float, n_frames: int) -> np.ndarray:
    """w[0] = bg_weight; w[c] = min(cap, (f_bg / f_c) ** power) (unseen classes count as 1 frame).

    V6's [1, 5, 8, 8] is bg_weight=1, power=0.5, cap=8 for actions covering ~4 % and <1.5 % of frames.
    """
    floor = 1.0 / max(n_frames, 1)
    ratio = max(freq[0], floor) / np.maximum(freq, floor)
    w = np.minimum(cap, ratio ** power)
    w[0] = bg_weight
    return w.astype(np.float32)


def lab_class_weights(table: PairTable, bg_weight: float, power: float, cap: float) -> np.ndarray:
    """float32 [P, 38]: each pair's class weights (`class_weights`) from its own lab's class frequencies
    (`optim.per_lab_class_weights`): an action that is common in one lab and rare in another weighs less
    in the first."""
    n = int(table.length.sum())
    labs, code = np.unique(table.lab_id.astype(str), return_inverse=True)
    row_lab = np.repeat(code, table.length)
    y = table.y[:n]
    out = np.zeros((len(table.length), NUM_CLASSES), np.float32)
    for k in range(len(labs)):
        yk = y[(row_lab == k) & (y >= 0)]
        counts = np.bincount(yk, minlength=NUM_CLASSES).astype(np.float64)
        w = class_weights(counts / max(counts.sum(), 1.0), bg_weight, power, cap, int((row_lab == k).sum()))
        out[code == k] = w
    return out


def sample_windows(table: PairTable, n: int, window: int, behaviour_bias: float, rng: np.random.Generator,
                   lab_alpha: float = 1.0):
    """n windows as (pair index [n], start frame [n]); a window may run past a short pair's end (then padded).

    Uniform windows cover every frame with equal probability; with probability `behaviour_bias` a window
    is instead placed to contain a random frame carrying a behaviour label. lab_alpha != 1 first draws each
    window's lab with p(lab) = frames(lab) ** lab_alpha / sum over labs, then its frame as above among that
    lab's frames (`lab_frames`); lab_alpha = 1 is the frame-proportional draw, exactly as without it.
    """
    if lab_alpha == 1.0:
        cum = np.cumsum(table.length)
        frame = rng.integers(0, cum[-1], size=n)  # a frame uniformly over all frames
        if behaviour_bias > 0:
            if "beh" not in table.memo:  # once per table, not per epoch
                table.memo["beh"] = np.flatnonzero(table.y > 0)
            beh = table.memo["beh"]
            if beh.size:
                use = rng.random(n) < behaviour_bias
                frame[use] = beh[rng.integers(0, beh.size, size=int(use.sum()))]
        pair = np.searchsorted(cum, frame, side="right")
    else:
        pair, frame = _lab_balanced_frames(table, n, behaviour_bias, rng, lab_alpha)
    local = frame - table.start[pair]
    start = local - rng.integers(0, window, size=n)  # the chosen frame lands anywhere in the window
    start = np.clip(start, 0, np.maximum(table.length[pair] - window, 0))
    return pair.astype(np.int64), start.astype(np.int64)


def lab_shares(table: PairTable, lab_alpha: float) -> dict[str, float]:
    """p(lab) of lab-balanced sampling: frames(lab) ** lab_alpha, normalised (alpha 1: the frame shares)."""
    labs, code = np.unique(table.lab_id.astype(str), return_inverse=True)
    frames = np.bincount(code, weights=table.length, minlength=len(labs))
    w = frames ** float(lab_alpha)
    return dict(zip(labs.tolist(), (w / w.sum()).tolist()))


def _lab_balanced_frames(table: PairTable, n: int, behaviour_bias: float, rng: np.random.Generator,
                         lab_alpha: float):
    """(pair [n], global frame [n]): lab by `lab_shares`, then uniform over the lab's frames (or, with
    probability behaviour_bias, over its behaviour frames where it has any)."""
    shares = lab_shares(table, lab_alpha)
    labs = list(shares)
    code, pair_of_row, beh_rows, beh_lab = _lab_frame_maps(table, labs)
    lab = rng.choice(len(labs), size=n, p=np.asarray([shares[k] for k in labs]))
    use = rng.random(n) < behaviour_bias if behaviour_bias > 0 else np.zeros(n, bool)
    pair, frame = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for k in range(len(labs)):
        mine = np.flatnonzero(lab == k)
        if not mine.size:
            continue
        pairs_k = np.flatnonzero(code == k)
        cum = np.cumsum(table.length[pairs_k])
        u = rng.integers(0, cum[-1], size=mine.size)  # uniform over the lab's frames
        j = np.searchsorted(cum, u, side="right")
        pair[mine] = pairs_k[j]
        frame[mine] = table.start[pairs_k[j]] + u - (cum[j] - table.length[pairs_k[j]])
        beh_k = beh_rows[beh_lab == k]
        on = use[mine]
        if beh_k.size and on.any():
            rows = beh_k[rng.integers(0, beh_k.size, size=int(on.sum()))]
            pair[mine[on]], frame[mine[on]] = pair_of_row[rows], rows
    return pair, frame


def _lab_frame_maps(table: PairTable, labs: list[str]):
    """(lab code per pair, pair of every frame row, behaviour rows, their lab codes) of `table`: computed once
    per table (kept in table.memo; a table's labels never change after loading)."""
    key = ("lab_frames", tuple(labs))
    if key not in table.memo:
        code = np.searchsorted(np.asarray(labs), table.lab_id.astype(str))
        pair_of_row = np.repeat(np.arange(len(table.length)), table.length)  # row -> pair (TAIL excluded)
        beh_rows = np.flatnonzero(table.y[: len(pair_of_row)] > 0)
        table.memo[key] = (code, pair_of_row, beh_rows, code[pair_of_row[beh_rows]])
    return table.memo[key]


def gather(table: PairTable, pair: np.ndarray, start: np.ndarray, window: int):
    """Windows -> x float32 [B, W, F], y int64 [B, W] (IGNORE on padding), mask bool [B, W],
    allowed bool [B, 38]. In RAM: one strided-view index (or one fancy index); memmap: one fancy-index read
    per video in the batch (`_gather_memmap`). A float16 table is upcast here, per batch."""
    offs = start[:, None] + np.arange(window)[None, :]  # [B, W] frame within the pair
    mask = offs < table.length[pair][:, None]  # a prefix: start >= 0
    if table.in_memory and window <= TAIL:
        # Each window is one contiguous run of rows: index a strided view of all windows (one memcpy each)
        # instead of gathering B * W single rows.
        g = table.start[pair] + start  # [B] first global row (of y; of x too unless a fold's view)
        n_rows, F = table.x.shape
        s0, s1 = table.x.strides
        views = np.lib.stride_tricks.as_strided(table.x, (n_rows - window + 1, window, F), (s0, s0, s1),
                                                writeable=False)
        x = views[g if table.x_start is None else table.x_start[pair] + start]  # [B, W, F] copy
        ys = table.y.strides[0]
        y = np.lib.stride_tricks.as_strided(table.y, (len(table.y) - window + 1, window), (ys, ys),
                                            writeable=False)[g]  # [B, W]
    elif table.in_memory:
        flat = np.where(mask, table.start[pair][:, None] + offs, table.start[pair][:, None])  # [B, W]
        x = table.x[flat if table.x_start is None else flat - (table.start - table.x_start)[pair][:, None]]
        y = table.y[flat]
    else:
        x = _gather_memmap(table, pair, offs, mask)
        flat = np.where(mask, table.start[pair][:, None] + offs, table.start[pair][:, None])
        y = table.y[flat]
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if not mask.all():  # only windows running past a short pair's end need zeroing
        x[~mask] = 0.0
        y = np.where(mask, y, IGNORE)
    return x, y, mask, table.allowed[pair]


def _gather_memmap(table: PairTable, pair: np.ndarray, offs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """x [B, W, F] (storage dtype) from the per-video memmaps: windows grouped by video, one fancy-index
    read `mm[rows[:, None], frames]` per video (frames past a pair's end read its last frame; `gather` zeroes
    them)."""
    vid = table.pair_video[pair]
    first = table.videos[0]
    x = np.empty((len(pair), offs.shape[1], first.shape[-1]), first.dtype)
    order = np.argsort(vid, kind="stable")
    cuts = np.flatnonzero(np.diff(vid[order])) + 1
    last = table.length[pair][:, None] - 1
    frames = np.where(mask, offs, last)
    for sel in np.split(order, cuts):
        mm = table.videos[int(vid[sel[0]])]
        x[sel] = mm[table.pair_row[pair[sel]][:, None], frames[sel]]
    return x


def gather_loop(table: PairTable, pair: np.ndarray, start: np.ndarray, window: int):
    """Reference for `gather`: one window at a time (the per-item Dataset way). Same outputs, for
    tests/bench."""
    F = table.pair_x(0).shape[-1]
    x = np.zeros((len(pair), window, F), np.float32)
    y = np.full((len(pair), window), IGNORE, np.int64)
    mask = np.zeros((len(pair), window), bool)
    for b, (p, s) in enumerate(zip(pair, start)):
        n = max(0, min(window, int(table.length[p]) - int(s)))
        x[b, :n] = table.pair_x(int(p))[s:s + n]
        y[b, :n] = table.pair_y(int(p))[s:s + n]
        mask[b, :n] = True
    return x, y, mask, table.allowed[pair]


def epoch_batches(table: PairTable, n_windows: int, window: int, batch: int, behaviour_bias: float, seed: int,
                  epoch: int, rank: int = 0, world: int = 1, lab_alpha: float = 1.0):
    """The (pair, start) arrays of every batch of this rank in this epoch (global batch split across
    ranks); lab_alpha: `sample_windows`."""
    rng = np.random.default_rng([seed, epoch])
    steps = max(1, -(-n_windows // batch))
    pair, start = sample_windows(table, steps * batch, window, behaviour_bias, rng, lab_alpha)
    pair, start = pair[rank::world], start[rank::world]
    local = batch // world if batch >= world else 1
    return [(pair[i * local:(i + 1) * local], start[i * local:(i + 1) * local]) for i in range(steps)]


def prefetch_workers(table: PairTable, workers: int = 0) -> int:
    """Gather threads: `workers`, or (0 = auto) 1 for an in-RAM table and min(4, CPUs) for a memmap one
    (its reads wait on the page cache or the disk)."""
    if workers > 0:
        return workers
    return 1 if table.in_memory else max(1, min(4, os.cpu_count() or 1))


class Prefetcher:
    """Gathers batches in `workers` threads (0 = auto, `prefetch_workers`), up to `depth` + workers - 1
    batches ahead; iterate to get (x, y, mask, allowed) numpy tuples, in batch order (the same batches for
    any number of workers). An error in a gather is raised in the consumer."""

    def __init__(self, table: PairTable, batches, window: int, depth: int = 2, workers: int = 0):
        self._n = len(batches)
        self._todo = iter(batches)
        self._workers = prefetch_workers(table, workers)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="mabe-prefetch")
        self._ahead: deque = deque()
        self._job = lambda b: gather(table, b[0], b[1], window)
        for _ in range(depth + self._workers - 1):
            self._submit()

    def _submit(self) -> None:
        b = next(self._todo, None)
        if b is not None:
            self._ahead.append(self._pool.submit(self._job, b))

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        while self._ahead:
            item = self._ahead.popleft().result()
            self._submit()
            yield item

    def close(self):
        for f in self._ahead:
            f.cancel()
        self._ahead.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
