"""Reading the Kaggle MABe layout: metadata CSV, tracking and annotation parquet files.

This is the only module that touches Kaggle files. Everything it returns is validated; every bad input
raises `features.errors.MabeDataError` naming the file, the video and the problem.

Layout (docs/mabe.md, Data layout):

    <root>/train.csv, <root>/test.csv
    <root>/train_tracking/<lab_id>/<video_id>.parquet      (video_frame, mouse_id, bodypart, x, y)
    <root>/test_tracking/<lab_id>/<video_id>.parquet
    <root>/train_annotation/<lab_id>/<video_id>.parquet  (agent_id, target_id, action, start/stop_frame)

Quick look at the real metadata (prints what the whitelist parser normalised):

    python -c "from features.io import read_metadata, packaged_metadata; \
print(read_metadata(packaged_metadata('train'), report=True)[1])"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.errors import MabeDataError
from features.labels import ACTIONS, SELF_ACTIONS

# ---------------------------------------------------------------------------------------------- metadata
_MOUSE_FIELDS = (
    ("strain", "str"),
    ("color", "str"),
    ("sex", "str"),
    ("id", "float64"),
    ("age", "str"),
    ("condition", "str"),
)
# The 38 columns of train.csv / test.csv in file order, with the dtypes pandas infers on the real file.
META_COLUMNS: dict[str, str] = {
    "lab_id": "str",
    "video_id": "int64",
    **{f"mouse{m}_{name}": dt for m in range(1, 5) for name, dt in _MOUSE_FIELDS},
    "frames_per_second": "float64",
    "video_duration_sec": "float64",
    "pix_per_cm_approx": "float64",
    "video_width_pix": "int64",
    "video_height_pix": "int64",
    "arena_width_cm": "float64",
    "arena_height_cm": "float64",
    "arena_shape": "str",
    "arena_type": "str",
    "body_parts_tracked": "str",
    "behaviors_labeled": "str",
    "tracking_method": "str",
}
assert len(META_COLUMNS) == 38
# Columns that must never be empty (NaN) in a usable row.
_REQUIRED_VALUES = ("lab_id", "video_id", "frames_per_second", "pix_per_cm_approx", "body_parts_tracked")

_MOUSE_TOKEN = re.compile(r"^mouse([1-9])$")
# What the official metric accepts verbatim: "mouseA,mouseB,action" or "mouseA,self,action".
_STRICT_ENTRY = re.compile(r"^mouse([1-9]),(mouse[1-9]|self),([a-z]+)$")


def packaged_metadata(split: str = "train") -> Path:
    """Real metadata shipped in the package (`train` = gzipped train.csv, `test` = test.csv)."""
    data = Path(__file__).parent / "data"
    return data / ("train_meta.csv.gz" if split == "train" else "test_meta.csv")


@dataclass
class MetaReport:
    """What `read_metadata` had to normalise in `behaviors_labeled`."""

    videos_normalised: list[int] = field(default_factory=list)  # videos with >= 1 malformed entry
    labs: dict[str, int] = field(default_factory=dict)  # lab -> number of such videos
    malformed_entries: int = 0
    duplicates_dropped: int = 0
    # video -> actions (agent, target, action) that exist ONLY in malformed form (the metric ignores them)
    only_malformed: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)

    def __str__(self) -> str:
        labs = ", ".join(f"{k} ({v})" for k, v in sorted(self.labs.items())) or "none"
        only = "; ".join(
            f"{v}: {sorted({a for _, _, a in acts})}" for v, acts in sorted(self.only_malformed.items())
        )
        return (
            f"behaviors_labeled: {len(self.videos_normalised)} videos normalised "
            f"({self.malformed_entries} malformed entries, {self.duplicates_dropped} duplicates dropped); "
            f"labs: {labs}; actions only in malformed form: {only or 'none'}"
        )


def parse_entry(entry: str, *, file=None, video=None) -> tuple[tuple[int, int, str], bool]:
    """One whitelist string -> ((agent, target, action), well_formed).

    Malformed single-quoted forms such as `'mouse1','mouse2','sniff'` or `mouse1','mouse2','attack'` are
    repaired by dropping quotes and spaces; `well_formed` tells whether the raw string was already exact (the
    official metric only accepts those). `self` becomes target == agent.
    """
    well_formed = _STRICT_ENTRY.match(entry) is not None
    tokens = entry.replace("'", "").replace('"', "").replace(" ", "").split(",")
    if len(tokens) != 3:
        raise MabeDataError(
            f"behaviors_labeled entry {entry!r} is not 'agent,target,action'", file=file, video=video
        )
    a_tok, t_tok, action = tokens
    m = _MOUSE_TOKEN.match(a_tok)
    if m is None:
        raise MabeDataError(f"behaviors_labeled entry {entry!r}: bad agent {a_tok!r}", file=file, video=video)
    agent = int(m.group(1))
    if action not in ACTIONS:
        raise MabeDataError(
            f"behaviors_labeled entry {entry!r}: unknown action {action!r}", file=file, video=video
        )
    if t_tok == "self":
        target = agent
    else:
        mt = _MOUSE_TOKEN.match(t_tok)
        if mt is None:
            raise MabeDataError(
                f"behaviors_labeled entry {entry!r}: bad target {t_tok!r}", file=file, video=video
            )
        target = int(mt.group(1))
    if (action in SELF_ACTIONS) != (target == agent):
        raise MabeDataError(
            f"behaviors_labeled entry {entry!r}: {action!r} is "
            f"{'a self' if action in SELF_ACTIONS else 'a pair'} action",
            file=file,
            video=video,
        )
    return (agent, target, action), well_formed


def parse_behaviors(raw, *, file=None, video=None) -> tuple[list[str], list[tuple], list[tuple], int, int]:
    """`behaviors_labeled` cell -> (raw strings, normalised triples, strict triples, n_malformed, n_dupes).

    raw NaN/None/"" -> empty whitelist. Normalised triples are deduplicated in first-seen order; strict
    triples are those written exactly as the metric expects (no quote repair).
    """
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or raw is pd.NA or str(raw).strip() == "":
        return [], [], [], 0, 0
    try:
        entries = json.loads(raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MabeDataError(f"behaviors_labeled is not a JSON list ({exc})", file=file, video=video) from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise MabeDataError("behaviors_labeled is not a JSON list of strings", file=file, video=video)
    seen: dict[tuple, None] = {}
    strict: dict[tuple, None] = {}
    malformed = dupes = 0
    for e in entries:
        triple, ok = parse_entry(e, file=file, video=video)
        malformed += not ok
        if ok:
            strict[triple] = None
        if triple in seen:
            dupes += 1
        seen[triple] = None
    return list(entries), list(seen), list(strict), malformed, dupes


def _parse_body_parts(raw, *, file=None, video=None) -> list[str]:
    try:
        parts = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        raise MabeDataError(
            f"body_parts_tracked {raw!r} is not a JSON list", file=file, video=video
        ) from None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise MabeDataError(
            "body_parts_tracked is not a non-empty JSON list of strings", file=file, video=video
        )
    return parts


def read_metadata(csv_path: str | Path, report: bool = False):
    """train.csv / test.csv (optionally .gz) -> DataFrame with the 38 columns in their real dtypes, plus

    `body_parts` list[str], `behaviors` list[(agent, target, action)] (normalised, deduplicated; target ==
    agent for self), `behaviors_strict` (only entries the metric accepts verbatim), `behaviors_raw` list[str]
    (the JSON strings exactly as written) and `n_mice` (mice with a strain or colour given).
    With `report=True` returns `(df, MetaReport)`.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise MabeDataError("metadata file not found", file=path)
    try:
        df = pd.read_csv(
            path, dtype={c: ("object" if d == "str" else None) for c, d in META_COLUMNS.items() if d == "str"}
        )
    except Exception as exc:  # pandas raises several types on garbage
        raise MabeDataError(f"cannot read CSV ({type(exc).__name__}: {exc})", file=path) from None
    missing = [c for c in META_COLUMNS if c not in df.columns]
    if missing:
        extra = [c for c in df.columns if c not in META_COLUMNS]
        hint = f" (unexpected column(s) {extra}: misspelt?)" if extra else ""
        raise MabeDataError(f"missing column(s) {missing}{hint}", file=path)
    df = df[list(META_COLUMNS)].copy()
    if len(df) == 0:
        raise MabeDataError("metadata has no rows", file=path)
    for col in _REQUIRED_VALUES:
        bad = df[col].isna()
        if bad.any():
            vid = df.loc[bad, "video_id"].iloc[0] if col != "video_id" else None
            raise MabeDataError(f"column {col!r} is empty in {int(bad.sum())} row(s)", file=path, video=vid)
    for col, dt in META_COLUMNS.items():
        try:
            if dt == "str":
                # keep NaN as missing: pandas 2 (the Kaggle image) would turn NaN into the string "nan"
                missing = df[col].isna()
                df[col] = df[col].astype("str")
                if missing.any() and not df[col].isna()[missing].all():
                    df.loc[missing, col] = np.nan
            elif dt == "int64":
                num = pd.to_numeric(df[col], errors="raise")
                if not np.all(np.isfinite(num)) or not np.all(num == np.floor(num)):
                    raise ValueError("not integral")
                df[col] = num.astype("int64")
            else:
                df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise MabeDataError(f"column {col!r} cannot be read as {dt} ({exc})", file=path) from None
    if df["video_id"].duplicated().any():
        dup = int(df.loc[df["video_id"].duplicated(), "video_id"].iloc[0])
        raise MabeDataError("video_id listed twice", file=path, video=dup)
    for col in ("frames_per_second", "pix_per_cm_approx"):
        bad = ~(df[col] > 0)
        if bad.any():
            raise MabeDataError(f"{col} must be > 0", file=path, video=int(df.loc[bad, "video_id"].iloc[0]))

    rep = MetaReport()
    body_parts, behaviors, strict, raws = [], [], [], []
    for vid, lab, bp, bl in zip(
        df["video_id"], df["lab_id"], df["body_parts_tracked"], df["behaviors_labeled"]
    ):
        body_parts.append(_parse_body_parts(bp, file=path, video=int(vid)))
        raw, norm, ok, n_bad, n_dup = parse_behaviors(bl, file=path, video=int(vid))
        raws.append(raw)
        behaviors.append(norm)
        strict.append(ok)
        if n_bad:
            rep.videos_normalised.append(int(vid))
            rep.labs[lab] = rep.labs.get(lab, 0) + 1
            rep.malformed_entries += n_bad
            lost = [t for t in norm if t not in set(ok)]
            if lost:
                rep.only_malformed[int(vid)] = lost
        rep.duplicates_dropped += n_dup
    df["body_parts"] = body_parts
    df["behaviors"] = behaviors
    df["behaviors_strict"] = strict
    df["behaviors_raw"] = raws
    present = np.zeros(len(df), dtype=np.int64)
    for m in range(1, 5):
        present += (df[f"mouse{m}_strain"].notna() | df[f"mouse{m}_color"].notna()).to_numpy()
    df["n_mice"] = present
    df = df.reset_index(drop=True)
    return (df, rep) if report else df


# ---------------------------------------------------------------------------------------------- layout
def kaggle_paths(root: str | Path, split: str, lab_id: str, video_id: int) -> tuple[Path, Path | None]:
    """(tracking parquet, annotation parquet or None) for one video. Annotation is None for the test split
    and when the file does not exist (a whitelisted video where nothing happened has no annotation file)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    tracking = root / f"{split}_tracking" / str(lab_id) / f"{int(video_id)}.parquet"
    ann = root / "train_annotation" / str(lab_id) / f"{int(video_id)}.parquet" if split == "train" else None
    if ann is not None and not ann.exists():
        ann = None
    return tracking, ann


def metadata_path(root: str | Path, split: str) -> Path:
    """`<root>/train.csv` or `<root>/test.csv`."""
    return Path(root) / f"{split}.csv"


# ---------------------------------------------------------------------------------------------- parquet
@dataclass
class Tracking:
    """Dense tracking of one video: xy float32 [T, M, K, 2], NaN = missing, frames 0..max."""

    xy: np.ndarray
    mouse_ids: list[int]
    bodyparts: list[str]
    n_rows: int = 0  # rows in the long parquet (for rates)

    @property
    def n_frames(self) -> int:
        return self.xy.shape[0]


def _video_of(path: Path, video_id):
    if video_id is not None:
        return video_id
    try:
        return int(path.stem)
    except ValueError:
        return path.stem


def _read_table(path: Path, video, kind: str, dictionary: tuple[str, ...] = ()) -> pa.Table:
    """Read a parquet file; string columns named in `dictionary` are decoded as dictionary arrays (codes +
    a few names: much faster than materialising millions of strings)."""
    if not path.is_file():
        raise MabeDataError(f"{kind} file not found", file=path, video=video)
    try:
        # ParquetFile.read (not pq.read_table, which goes through the dataset layer in 128 Ki-row batches):
        # numeric columns come back as one chunk each (zero-copy to numpy) and it is ~15 % faster
        try:
            with pq.ParquetFile(path, memory_map=True, read_dictionary=list(dictionary)) as pf:
                return pf.read()
        except KeyError:  # a name in `dictionary` the file lacks (_check_columns reports missing columns)
            names = set(pq.read_schema(path, memory_map=True).names)
            with pq.ParquetFile(
                path, memory_map=True, read_dictionary=[c for c in dictionary if c in names]
            ) as pf:
                return pf.read()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise MabeDataError(f"corrupt or unreadable parquet ({exc})", file=path, video=video) from None


def _is_text(t: pa.DataType) -> bool:
    view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16 only
    return pa.types.is_string(t) or pa.types.is_large_string(t) or view(t)


def _check_columns(table: pa.Table, columns: dict[str, str], path: Path, video) -> None:
    names = table.column_names
    missing = [c for c in columns if c not in names]
    if missing:
        extra = [c for c in names if c not in columns]
        hint = f" (found {extra}: misspelt?)" if extra else ""
        raise MabeDataError(f"missing column(s) {missing}{hint}", file=path, video=video)
    for col, kind in columns.items():
        t = table.schema.field(col).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        ok = {
            "int": pa.types.is_integer(t),
            "num": pa.types.is_integer(t) or pa.types.is_floating(t),
            "str": _is_text(t),
        }[kind]
        if not ok:
            want = {"int": "integer", "num": "numeric", "str": "string"}[kind]
            raise MabeDataError(f"column {col!r} has type {t}, expected {want}", file=path, video=video)


def _int_column(table: pa.Table, col: str) -> np.ndarray:
    arr = table.column(col)
    if arr.null_count:
        raise ValueError(col)
    return arr.to_numpy()


_BLOCK = 1 << 16  # rows per block of the dense scatter in read_tracking (64 Ki: best measured, 16 Ki-256 Ki)


def _cells(table: pa.Table, mice: np.ndarray, mouse_min, path, video):
    """Each row's (mouse, body part) cell: (mouse_ids, bodyparts, cell index per row, number of cells)."""
    bp = table.column("bodypart")
    if bp.null_count:
        raise MabeDataError("null values in column 'bodypart'", file=path, video=video)
    # body parts: the sorted union of the chunks' dictionary names (one chunk per distinct dictionary, usually
    # one); each chunk's codes are remapped onto it unless its dictionary is already that sorted list.
    # Names no row uses (a pandas Categorical's unused categories) are dropped further down.
    chunks = []
    for chunk in bp.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        chunks.append(
            ([str(n) for n in chunk.dictionary.to_pylist()], chunk.indices.to_numpy(zero_copy_only=False))
        )
    bodyparts = sorted({n for names, _ in chunks for n in names})
    # mouse ids: usually 1..M (a few ids in a short range): the row index is mouse_id - lo, ids in the range
    # that no row uses are dropped further down; a wide spread of ids goes through the sorted unique ids
    lo, hi = int(mouse_min), int(mice.max())
    if hi - lo < 64:
        mouse_ids = np.arange(lo, hi + 1)
        m_idx = mice - lo
    else:
        mouse_ids = np.sort(
            pc.unique(table.column("mouse_id")).to_numpy(zero_copy_only=False).astype(np.int64)
        )
        m_idx = np.searchsorted(mouse_ids, mice)
    M, K = mouse_ids.size, len(bodyparts)
    # (mouse, part) cell of each row, in the smallest integer type that holds M * K (cheap arithmetic)
    cells = M * K
    ctype = np.uint8 if cells < 256 else np.int32 if cells < 2**31 else np.int64
    rank = {n: i for i, n in enumerate(bodyparts)}
    k_parts = []
    for names, codes in chunks:
        remap = np.asarray([rank[n] for n in names], dtype=ctype)
        identity = remap.size == K and (remap == np.arange(K)).all()
        k_parts.append(codes.astype(ctype, copy=False) if identity else remap[codes])  # gather only if needed
    k_idx = k_parts[0] if len(k_parts) == 1 else np.concatenate(k_parts)
    mk = m_idx.astype(ctype)
    mk *= ctype(K)
    mk += k_idx
    # many cells (a wide spread of ids, many unused names): count the used ones first so that the grid holds
    # only those (with few cells, unused ones are found more cheaply in the grid, after the scatter)
    if cells > 256:
        used = np.bincount(mk, minlength=cells).reshape(M, K) > 0
        used_m, used_k = used.any(1), used.any(0)
        if not (used_m.all() and used_k.all()):
            new_m = np.cumsum(used_m) - 1
            new_k = np.cumsum(used_k) - 1
            mouse_ids, bodyparts = mouse_ids[used_m], [b for b, u in zip(bodyparts, used_k) if u]
            K_used = len(bodyparts)
            mk = (new_m[:, None] * K_used + new_k[None, :]).astype(ctype).ravel()[mk]
            M, K = mouse_ids.size, K_used
            cells = M * K
    return mouse_ids, bodyparts, mk, cells


def _scatter(frames, x, y, mk, cells: int, mouse_ids, bodyparts: list[str]):
    """Rows -> dense xy [T, M, K, 2] (NaN = missing), without the mice / body parts no row uses."""
    n_rows = frames.size
    M, K = mouse_ids.size, len(bodyparts)
    n_frames = int(frames.max()) + 1
    grid = np.full((n_frames * cells, 2), np.nan, dtype=np.float32)
    # (x, y) float32 pairs viewed as one 8-byte value: a single 1-D scatter moves both coordinates. Done in
    # blocks of rows so that the block's flat index and pairs stay in cache (~2x faster than whole-array
    # temporaries); the index is intp, the only type numpy's scatter takes without converting it first
    target = grid.view(np.float64).reshape(-1)
    itype = np.int32 if n_frames * cells < 2**31 else np.int64  # int32 arithmetic is cheaper
    flat = np.empty(min(_BLOCK, n_rows), dtype=np.intp)
    pairs = np.empty((flat.size, 2), dtype=np.float32)
    for a in range(0, n_rows, _BLOCK):
        b = min(a + _BLOCK, n_rows)
        f, p = flat[: b - a], pairs[: b - a]
        # index into the flattened [T, M, K] grid: computed in itype, written as intp
        np.add(frames[a:b].astype(itype, copy=False) * itype(cells), mk[a:b], out=f, casting="unsafe")
        p[:, 0], p[:, 1] = x[a:b], y[a:b]
        target[f] = p.view(np.float64).reshape(-1)
    xy = grid.reshape(n_frames, M, K, 2)
    # drop mice / body parts no row uses. x, y are finite, so a cell is set iff a row landed in it: the frames
    # from the first row's on usually settle every mouse and part; only those still unseen are looked up
    # over the whole video (costs at most ~2 passes over the grid, and only in odd files)
    seen = ~np.isnan(xy[int(frames[0]) : int(frames[0]) + 32, :, :, 0]).all(0)
    used_m, used_k = seen.any(1), seen.any(0)
    for m in np.flatnonzero(~used_m):
        used_m[m] = not np.isnan(xy[:, m, :, 0]).all()
    for k in np.flatnonzero(~used_k):
        used_k[k] = not np.isnan(xy[:, :, k, 0]).all()
    if not used_m.all():  # np.take: a C-contiguous copy (boolean indexing may not be)
        xy, mouse_ids = np.take(xy, np.flatnonzero(used_m), axis=1), mouse_ids[used_m]
    if not used_k.all():
        xy, bodyparts = (
            np.take(xy, np.flatnonzero(used_k), axis=2),
            [b for b, u in zip(bodyparts, used_k) if u],
        )
    return xy, mouse_ids, bodyparts


def read_tracking(path: str | Path, video_id=None) -> Tracking:
    """Long tracking parquet -> dense `Tracking` (xy float32 [T = max frame + 1, M, K, 2], NaN = missing).

    Mice are sorted by id, body parts by name; only those some row uses are kept. Body parts are read as
    Arrow dictionary codes (no millions of Python strings), each row's (mouse, part) cell is a small integer,
    and a blocked vectorised scatter fills the flattened [T, M, K] grid: no pandas pivot
    (bench/data_bench.py measures the difference).
    """
    path = Path(path)
    video = _video_of(path, video_id)
    table = _read_table(path, video, "tracking", dictionary=("bodypart",))
    _check_columns(
        table,
        {"video_frame": "int", "mouse_id": "int", "bodypart": "str", "x": "num", "y": "num"},
        path,
        video,
    )
    n_rows = table.num_rows
    if n_rows == 0:
        raise MabeDataError("tracking parquet has no rows", file=path, video=video)
    try:
        frames = _int_column(table, "video_frame")
        mice = _int_column(table, "mouse_id")
    except ValueError as exc:
        raise MabeDataError(f"null values in column {exc}", file=path, video=video) from None
    if frames.min() < 0:
        raise MabeDataError(f"negative frame number {int(frames.min())}", file=path, video=video)
    mouse_min = mice.min()
    if mouse_min < 1:
        raise MabeDataError(f"mouse_id {int(mouse_min)} < 1", file=path, video=video)
    x = table.column("x").to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    y = table.column("y").to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    # min/max propagate NaN and show inf (cheaper than isfinite(...).all())
    if not all(np.isfinite(v.min()) and np.isfinite(v.max()) for v in (x, y)):
        bad = ~(np.isfinite(x) & np.isfinite(y))
        raise MabeDataError(
            f"{int(bad.sum())} row(s) with NaN/inf or null x/y (missing points must be missing rows)",
            file=path,
            video=video,
        )
    mouse_ids, bodyparts, mk, cells = _cells(table, mice, mouse_min, path, video)
    xy, mouse_ids, bodyparts = _scatter(frames, x, y, mk, cells, mouse_ids, bodyparts)
    return Tracking(xy=xy, mouse_ids=[int(m) for m in mouse_ids], bodyparts=bodyparts, n_rows=n_rows)


ANNOTATION_COLUMNS = ("agent_id", "target_id", "action", "start_frame", "stop_frame")
# The Kaggle submission (and solution) columns, in the official order: the one list every writer uses.
SUBMISSION_COLUMNS = ("row_id", "video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame")


def read_annotations(path: str | Path, video_id=None) -> pd.DataFrame:
    """Annotation parquet -> DataFrame[agent_id, target_id, action, start_frame, stop_frame] (ints, int, str).

    Intervals are half-open [start, stop) (docs/mabe.md, Data layout); start == stop is allowed (empty). A
    file with zero rows is valid (nothing happened) and gives an empty frame.
    """
    path = Path(path)
    video = _video_of(path, video_id)
    table = _read_table(path, video, "annotation")
    _check_columns(
        table,
        {"agent_id": "int", "target_id": "int", "action": "str", "start_frame": "int", "stop_frame": "int"},
        path,
        video,
    )
    try:
        cols = {
            c: _int_column(table, c).astype(np.int64)
            for c in ("agent_id", "target_id", "start_frame", "stop_frame")
        }
    except ValueError as exc:
        raise MabeDataError(f"null values in column {exc}", file=path, video=video) from None
    actions = table.column("action").to_pylist()
    df = pd.DataFrame(
        {
            "agent_id": cols["agent_id"],
            "target_id": cols["target_id"],
            "action": pd.Series(actions, dtype="str"),
            "start_frame": cols["start_frame"],
            "stop_frame": cols["stop_frame"],
        }
    )
    if len(df) == 0:
        return df
    unknown = sorted({a for a in actions if a not in ACTIONS}, key=str)
    if unknown:
        raise MabeDataError(f"unknown action(s) {unknown}", file=path, video=video)
    if (df["start_frame"] < 0).any():
        raise MabeDataError(f"negative start_frame {int(df['start_frame'].min())}", file=path, video=video)
    bad = df["start_frame"] > df["stop_frame"]
    if bad.any():
        r = df[bad].iloc[0]
        raise MabeDataError(
            f"start_frame {r.start_frame} > stop_frame {r.stop_frame} ({r.action}, mouse "
            f"{r.agent_id} -> {r.target_id})",
            file=path,
            video=video,
        )
    if (df["agent_id"] < 1).any() or (df["target_id"] < 1).any():
        raise MabeDataError("mouse ids must be >= 1", file=path, video=video)
    is_self = df["action"].isin(SELF_ACTIONS).to_numpy()
    same = (df["agent_id"] == df["target_id"]).to_numpy()
    if (is_self & ~same).any() or (~is_self & same).any():
        r = df[is_self != same].iloc[0]
        raise MabeDataError(
            f"{r.action!r} with agent {r.agent_id} and target {r.target_id}: self actions need "
            f"target == agent, pair actions a different target",
            file=path,
            video=video,
        )
    return df


def check_annotations_tracked(
    annotations: pd.DataFrame, tracking: Tracking, *, file=None, video=None
) -> None:
    """Every mouse an annotation names must be a mouse with tracking rows."""
    if annotations is None or len(annotations) == 0:
        return
    named = set(annotations["agent_id"].tolist()) | set(annotations["target_id"].tolist())
    untracked = sorted(named - set(tracking.mouse_ids))
    if untracked:
        raise MabeDataError(
            f"annotation names mouse {untracked} that is not tracked (tracked: {tracking.mouse_ids})",
            file=file,
            video=video,
        )
