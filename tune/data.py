"""Training data from the feature cache: in-RAM pair tables, vectorised window gather, a prefetch thread.

Why this shape: a training step on CPU/GPU is milliseconds, so the data path must be a few numpy fancy-index
operations on one contiguous array (no per-window Python loop, no DataLoader worker processes). A small
cache is loaded whole into RAM as `x[N_frames, F]` with per-pair offsets; a window is `offset + start +
arange(W)`. Caches larger than `data.in_memory_gb` fall back to per-window reads from the memmaps.
Batches are produced one step ahead by a background thread; the trainer measures the time it waits.

Sharding under DDP: the epoch's global list of windows is drawn from `seed + epoch` (identical on every
rank) and rank r takes windows r, r + world, ... (what DistributedSampler does).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
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

    x: np.ndarray | list  # float32 [N, F] in RAM, or a list of per-pair memmap views [T_i, F]
    y: np.ndarray  # int64 [N], IGNORE where the class is not whitelisted for the pair
    start: np.ndarray  # int64 [P]
    length: np.ndarray  # int64 [P]
    allowed: np.ndarray  # bool [P, 38] (normalised whitelist, background True)
    allowed_raw: np.ndarray  # bool [P, 38] (what the official metric accepts)
    video_id: np.ndarray  # int64 [P]
    lab_id: np.ndarray  # object [P]
    agent: np.ndarray  # int64 [P]
    target: np.ndarray  # int64 [P]

    @property
    def n_frames(self) -> int:
        return int(self.length.sum())

    @property
    def in_memory(self) -> bool:
        return isinstance(self.x, np.ndarray)

    def pair_x(self, i: int) -> np.ndarray:
        s, n = int(self.start[i]), int(self.length[i])
        return self.x[s:s + n] if self.in_memory else np.asarray(self.x[i])

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
    n_total = int(rows["n_frames"].sum())
    in_ram = n_total * F * 4 <= in_memory_gb * 2**30
    xs, ys, lengths = [], [], []
    rng = np.random.default_rng(seed + 7919)
    for vid, grp in rows.groupby("video_id", sort=False):
        xv, yv = cache.x(int(vid)), cache.y(int(vid))  # [P, T, F] memmap, [P, T]
        for p in grp["pair"].to_numpy():
            y = np.asarray(yv[p], dtype=np.int64)
            if shuffle_labels and len(y) > 3:
                y = np.roll(y, int(rng.integers(len(y) // 4, 3 * len(y) // 4 + 1)))
            xs.append(np.asarray(xv[p], dtype=np.float32) if in_ram else xv[p])
            ys.append(y)
            lengths.append(len(y))
    length = np.asarray(lengths, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    allowed = np.stack([np.asarray(a, dtype=bool) for a in rows["allowed"]])
    allowed_raw = np.stack([np.asarray(a, dtype=bool) for a in rows["allowed_raw"]])
    allowed[:, 0] = True
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    pair_of_frame = np.repeat(np.arange(len(length)), length)
    # non-whitelisted -> no loss
    y = np.where(allowed[pair_of_frame, np.clip(y, 0, NUM_CLASSES - 1)], y, IGNORE)
    if in_ram:  # one contiguous array + TAIL zero frames (see gather)
        x = np.zeros((int(length.sum()) + TAIL, F), np.float32)
        np.concatenate(xs, out=x[: int(length.sum())]) if xs else None
        y = np.concatenate([y, np.full(TAIL, IGNORE, np.int64)])
    else:
        x = xs
    return PairTable(x=x, y=y, start=start, length=length, allowed=allowed, allowed_raw=allowed_raw,
                     video_id=rows["video_id"].to_numpy(np.int64),
                     lab_id=rows["lab_id"].astype(str).to_numpy(),
                     agent=rows["agent"].to_numpy(np.int64), target=rows["target"].to_numpy(np.int64))


def feature_stats(table: PairTable, max_frames: int = 200_000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over (a sample of) the training frames, NaN-aware."""
    rng = np.random.default_rng(seed)
    n = table.n_frames
    if table.in_memory:
        idx = np.sort(rng.choice(n, size=min(n, max_frames), replace=False))
        sample = table.x[idx]
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
            beh = np.flatnonzero(table.y > 0)
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
    code = np.searchsorted(np.asarray(labs), table.lab_id.astype(str))
    lab = rng.choice(len(labs), size=n, p=np.asarray([shares[k] for k in labs]))
    use = rng.random(n) < behaviour_bias if behaviour_bias > 0 else np.zeros(n, bool)
    pair_of_row = np.repeat(np.arange(len(table.length)), table.length)  # global row -> pair (TAIL excluded)
    beh_rows = np.flatnonzero(table.y[: len(pair_of_row)] > 0)
    beh_lab = code[pair_of_row[beh_rows]]
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


def gather(table: PairTable, pair: np.ndarray, start: np.ndarray, window: int):
    """Windows -> x float32 [B, W, F], y int64 [B, W] (IGNORE on padding), mask bool [B, W],
    allowed bool [B, 38]."""
    offs = start[:, None] + np.arange(window)[None, :]  # [B, W] frame within the pair
    mask = offs < table.length[pair][:, None]  # a prefix: start >= 0
    if table.in_memory and window <= TAIL:
        # Each window is one contiguous run of rows: index a strided view of all windows (one memcpy each)
        # instead of gathering B * W single rows.
        g = table.start[pair] + start  # [B] first global row
        n_rows, F = table.x.shape
        s0, s1 = table.x.strides
        views = np.lib.stride_tricks.as_strided(table.x, (n_rows - window + 1, window, F), (s0, s0, s1),
                                                writeable=False)
        x = views[g]  # [B, W, F] copy
        ys = table.y.strides[0]
        y = np.lib.stride_tricks.as_strided(table.y, (len(table.y) - window + 1, window), (ys, ys),
                                            writeable=False)[g]  # [B, W]
    elif table.in_memory:
        flat = np.where(mask, table.start[pair][:, None] + offs, table.start[pair][:, None])  # [B, W]
        x = table.x[flat]  # [B, W, F]
        y = table.y[flat]
    else:
        F = table.x[0].shape[-1]
        x = np.zeros((len(pair), window, F), np.float32)
        for b, (p, s) in enumerate(zip(pair, start)):
            chunk = np.asarray(table.x[p][s:s + window], dtype=np.float32)
            x[b, : len(chunk)] = chunk
        flat = np.where(mask, table.start[pair][:, None] + offs, table.start[pair][:, None])
        y = table.y[flat]
    if not mask.all():  # only windows running past a short pair's end need zeroing
        x[~mask] = 0.0
        y = np.where(mask, y, IGNORE)
    return x, y, mask, table.allowed[pair]


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


class Prefetcher:
    """Gathers batches in a background thread, `depth` ahead; iterate to get (x, y, mask, allowed) numpy
    tuples."""

    def __init__(self, table: PairTable, batches, window: int, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._n = len(batches)

        def work():
            try:
                for pair, start in batches:
                    if self._stop.is_set():
                        return
                    self._q.put(gather(table, pair, start, window))
            except BaseException as exc:  # surfaced in the consumer
                self._q.put(exc)

        self._t = threading.Thread(target=work, daemon=True)
        self._t.start()

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        for _ in range(self._n):
            item = self._q.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        while not self._q.empty():
            self._q.get_nowait()
