"""features.io: real metadata parses, the reader is exact, every bad input names file + video + problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.errors import MabeDataError
from features.io import (
    META_COLUMNS,
    kaggle_paths,
    packaged_metadata,
    parse_entry,
    read_annotations,
    read_metadata,
    read_tracking,
)
from features.pipeline import FeatureSettings, load_video, video_features

REAL_TRAIN = Path("/work/shared/data/kaggle-meta/train.csv")


def _train_csv() -> Path:
    return REAL_TRAIN if REAL_TRAIN.is_file() else packaged_metadata("train")


@pytest.fixture(scope="module")
def real():
    return read_metadata(_train_csv(), report=True)


# ----------------------------------------------------------------------------------------- metadata
def test_real_metadata_all_rows_and_dtypes(real):
    df, _ = real
    assert len(df) == 8789 and list(df.columns[:38]) == list(META_COLUMNS)
    for col, dt in META_COLUMNS.items():
        assert str(df[col].dtype) == dt, col
    assert df["video_id"].is_unique
    assert (df["behaviors"].map(len) > 0).sum() == 848  # annotated (whitelisted) videos
    assert df["n_mice"].value_counts().to_dict() == {3: 7933, 2: 846, 4: 10}
    assert df["body_parts"].map(len).between(4, 18).all()


def test_real_metadata_normalisation_report(real):
    df, rep = real
    assert len(rep.videos_normalised) == 26
    assert rep.labs == {"DeliriousFly": 6, "ReflectiveManatee": 20}
    assert sorted(rep.only_malformed) == [390030205, 1270744933, 1859225348]
    assert all(acts == [(1, 2, "attack")] for acts in rep.only_malformed.values())
    row = df.set_index("video_id").loc[390030205]
    assert (1, 2, "attack") in row.behaviors and (1, 2, "attack") not in row.behaviors_strict
    assert "mouse1','mouse2','attack'" in row.behaviors_raw  # raw kept verbatim for the metric
    assert len(row.behaviors) == len(set(row.behaviors))  # deduplicated
    fly = df[df.lab_id == "DeliriousFly"].iloc[0]
    assert sorted(fly.behaviors) == [(1, 2, "attack"), (1, 2, "dominance"), (1, 2, "sniff")]
    assert "26 videos normalised" in str(rep)


def test_packaged_copy_equals_real_file(real):
    df, _ = real
    packaged = read_metadata(packaged_metadata("train"))
    pd.testing.assert_frame_equal(df.iloc[:, :38], packaged.iloc[:, :38])
    test = read_metadata(packaged_metadata("test"))
    assert len(test) == 1 and test.video_id.iloc[0] == 438887472 and len(test.behaviors.iloc[0]) == 76


def test_parse_entry_forms():
    assert parse_entry("mouse1,mouse2,sniff") == ((1, 2, "sniff"), True)
    assert parse_entry("mouse3,self,rear") == ((3, 3, "rear"), True)
    assert parse_entry("'mouse1','mouse2','sniff'") == ((1, 2, "sniff"), False)
    assert parse_entry("mouse1','mouse2','attack'") == ((1, 2, "attack"), False)
    with pytest.raises(MabeDataError, match="unknown action"):
        parse_entry("mouse1,mouse2,dance")
    with pytest.raises(MabeDataError, match="self action"):
        parse_entry("mouse1,mouse2,rear")


def _write_meta(tmp_path, mutate) -> Path:
    df = pd.read_csv(packaged_metadata("train"), nrows=5)
    df = mutate(df)
    p = tmp_path / "train.csv"
    df.to_csv(p, index=False)
    return p


def test_metadata_missing_and_misspelt_column(tmp_path):
    p = _write_meta(tmp_path, lambda d: d.drop(columns=["pix_per_cm_approx"]))
    with pytest.raises(MabeDataError, match=r"train\.csv.*missing column.*pix_per_cm_approx"):
        read_metadata(p)
    p = _write_meta(tmp_path, lambda d: d.rename(columns={"frames_per_second": "frames_per_secnd"}))
    with pytest.raises(MabeDataError, match=r"missing column.*frames_per_second.*frames_per_secnd.*misspelt"):
        read_metadata(p)


def test_metadata_wrong_dtype_and_bad_whitelist(tmp_path):
    p = _write_meta(tmp_path, lambda d: d.assign(frames_per_second="fast"))
    with pytest.raises(MabeDataError, match="frames_per_second.*float64"):
        read_metadata(p)

    def bad_json(d):
        d.loc[2, "behaviors_labeled"] = "[not json"
        return d

    p = _write_meta(tmp_path, bad_json)
    vid = pd.read_csv(p).video_id[2]
    with pytest.raises(MabeDataError, match=f"video {vid}.*not a JSON list"):
        read_metadata(p)


# ----------------------------------------------------------------------------------------- tracking
def _tracking_table(rows, **types) -> pa.Table:
    f, m, b, x, y = zip(*rows)
    return pa.table(
        {
            "video_frame": pa.array(f, types.get("f", pa.int64())),
            "mouse_id": pa.array(m, types.get("m", pa.int64())),
            "bodypart": pa.array(b, types.get("b", pa.string())),
            "x": pa.array(x, types.get("x", pa.float32())),
            "y": pa.array(y, types.get("y", pa.float32())),
        }
    )


def _write(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


ROWS = [
    (0, 1, "nose", 1.0, 2.0),
    (0, 2, "tail_base", 3.0, 4.0),
    (2, 1, "tail_base", 5.0, 6.0),
    (2, 2, "nose", 7.5, 8.5),
]


def test_read_tracking_dense_exact(tmp_path):
    p = _write(_tracking_table(ROWS), tmp_path / "123.parquet")
    tr = read_tracking(p)
    assert tr.xy.shape == (3, 2, 2, 2) and tr.xy.dtype == np.float32  # frames 0..2, mice 1..2, parts
    assert tr.mouse_ids == [1, 2] and tr.bodyparts == ["nose", "tail_base"]
    np.testing.assert_array_equal(tr.xy[0, 0, 0], [1.0, 2.0])  # frame 0, mouse 1, nose
    np.testing.assert_array_equal(tr.xy[0, 1, 1], [3.0, 4.0])  # frame 0, mouse 2, tail_base
    np.testing.assert_array_equal(tr.xy[2, 0, 1], [5.0, 6.0])
    np.testing.assert_array_equal(tr.xy[2, 1, 0], [7.5, 8.5])
    assert np.isnan(tr.xy[1]).all()  # a whole missing frame
    assert np.isnan(tr.xy[0, 0, 1]).all()  # a missing row
    assert np.isnan(tr.xy).sum() == 2 * (3 * 2 * 2 - 4)


def test_read_tracking_matches_pandas_pivot(tmp_path):
    rng = np.random.default_rng(0)
    parts = ["ear_left", "nose", "tail_base", "body_center"]
    rows = [
        (f, m, b, float(rng.normal()), float(rng.normal()))
        for f in range(50)
        for m in (1, 3)
        for b in parts
        if rng.random() > 0.2
    ]
    p = _write(
        _tracking_table(rows, m=pa.int8(), f=pa.int32(), b=pa.dictionary(pa.int8(), pa.string())),
        tmp_path / "5.parquet",
    )
    tr = read_tracking(p)
    df = pd.read_parquet(p)
    df["bodypart"] = df["bodypart"].astype(str)
    wide = df.pivot_table(index="video_frame", columns=["mouse_id", "bodypart"], values=["x", "y"])
    for (coord, mouse, part), col in wide.items():
        got = tr.xy[
            wide.index.to_numpy(), tr.mouse_ids.index(mouse), tr.bodyparts.index(part), "xy".index(coord)
        ]
        np.testing.assert_allclose(got, col.to_numpy(), rtol=1e-6)
    assert tr.mouse_ids == [1, 3]


def test_read_tracking_row_groups_with_different_dictionaries(tmp_path):
    # each row group gets its own parquet dictionary, in order of first appearance: "tail_base" first in
    # the first group, "nose" first in the second; the reader must map both onto one sorted list
    rows = [
        (0, 1, "tail_base", 1.0, 2.0),
        (0, 1, "nose", 3.0, 4.0),
        (1, 2, "nose", 5.0, 6.0),
        (1, 2, "ear_left", 7.0, 8.0),
    ]
    p = tmp_path / "9.parquet"
    pq.write_table(_tracking_table(rows, m=pa.int8()), p, row_group_size=2)
    chunks = pq.ParquetFile(p, read_dictionary=["bodypart"]).read().column("bodypart").chunks
    assert [c.dictionary.to_pylist() for c in chunks] == [["tail_base", "nose"], ["nose", "ear_left"]]
    tr = read_tracking(p)
    assert tr.mouse_ids == [1, 2] and tr.bodyparts == ["ear_left", "nose", "tail_base"]
    assert tr.xy.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(tr.xy[0, 0], [[np.nan, np.nan], [3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(tr.xy[1, 1], [[7.0, 8.0], [5.0, 6.0], [np.nan, np.nan]])
    assert np.isnan(tr.xy[0, 1]).all() and np.isnan(tr.xy[1, 0]).all()


def test_read_tracking_unused_categories_and_mouse_ids(tmp_path):
    # a pandas Categorical keeps unused categories in the parquet dictionary ("ear_right", "zz"); mouse 2 has
    # no row (ids 1 and 3), and frame 0 (the first row's) shows neither mouse 3 nor "tail_base"
    df = pd.DataFrame(
        {
            "video_frame": np.array([0, 1, 1, 2], dtype=np.int32),
            "mouse_id": np.array([1, 3, 1, 3], dtype=np.int8),
            "bodypart": pd.Categorical(
                ["nose", "nose", "tail_base", "tail_base"],
                categories=["zz", "tail_base", "ear_right", "nose"],
            ),
            "x": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32),
            "y": np.array([5.0, 6.0, 7.0, 8.0], dtype=np.float32),
        }
    )
    p = tmp_path / "4.parquet"
    df.to_parquet(p)
    assert pq.ParquetFile(p).read().column("bodypart").chunk(0).dictionary.to_pylist() == [
        "zz",
        "tail_base",
        "ear_right",
        "nose",
    ]
    tr = read_tracking(p)
    assert tr.mouse_ids == [1, 3] and tr.bodyparts == ["nose", "tail_base"]
    assert tr.xy.shape == (3, 2, 2, 2) and tr.xy.flags.c_contiguous
    np.testing.assert_array_equal(tr.xy[0, 0, 0], [1.0, 5.0])  # frame 0, mouse 1, nose
    np.testing.assert_array_equal(tr.xy[1, 1, 0], [2.0, 6.0])  # frame 1, mouse 3, nose
    np.testing.assert_array_equal(tr.xy[1, 0, 1], [3.0, 7.0])  # frame 1, mouse 1, tail_base
    np.testing.assert_array_equal(tr.xy[2, 1, 1], [4.0, 8.0])  # frame 2, mouse 3, tail_base
    assert np.isnan(tr.xy).sum() == 2 * (3 * 2 * 2 - 4)


def test_read_tracking_many_mouse_ids_and_names(tmp_path):
    # 70 ids spread over 1..208 and a dictionary of 10 names, 3 of them used: more than 256 (mouse, part)
    # cells, so the used ones are counted before the scatter
    ids = [1 + 3 * i for i in range(70)]  # 1, 4, ..., 208
    rows = [(i % 5, m, ["b", "a", "c"][i % 3], float(i), float(-i)) for i, m in enumerate(ids)]
    names = [f"unused{j}" for j in range(7)] + ["c", "b", "a"]
    t = _tracking_table(rows).set_column(
        2, "bodypart", pa.DictionaryArray.from_arrays(pa.array([names.index(r[2]) for r in rows]), names)
    )
    p = _write(t, tmp_path / "6.parquet")
    tr = read_tracking(p)
    assert tr.mouse_ids == ids and tr.bodyparts == ["a", "b", "c"]
    assert tr.xy.shape == (5, 70, 3, 2)
    for i, m in enumerate(ids):
        np.testing.assert_array_equal(tr.xy[i % 5, i, "abc".index("bac"[i % 3])], [i, -i])
    assert np.isnan(tr.xy).sum() == 2 * (5 * 70 * 3 - 70)


@pytest.mark.parametrize(
    "btype", [pa.large_string(), pa.string_view(), pa.dictionary(pa.int16(), pa.string())]
)
def test_read_tracking_string_types(tmp_path, btype):
    p = _write(_tracking_table(ROWS, b=btype, m=pa.uint8()), tmp_path / "123.parquet")
    tr = read_tracking(p)
    assert tr.mouse_ids == [1, 2] and tr.bodyparts == ["nose", "tail_base"]
    np.testing.assert_array_equal(tr.xy[2, 1, 0], [7.5, 8.5])
    assert np.isnan(tr.xy).sum() == 2 * (3 * 2 * 2 - 4)


def test_read_tracking_more_rows_than_one_block(tmp_path):
    # 3 x 40,000 rows, more than one 64 Ki-row block of the scatter; x = frame, y = mouse id
    n = 40_000
    f = np.repeat(np.arange(n), 3)
    m = np.tile([2, 3, 17], n)
    t = pa.table(
        {
            "video_frame": pa.array(f, pa.int32()),
            "mouse_id": pa.array(m, pa.int16()),
            "bodypart": pa.array(["nose"] * f.size),
            "x": pa.array(f.astype(np.float64)),
            "y": pa.array(m.astype(np.float64)),
        }
    )
    tr = read_tracking(_write(t, tmp_path / "8.parquet"))
    assert tr.mouse_ids == [2, 3, 17] and tr.bodyparts == ["nose"] and tr.n_rows == 3 * n
    expected = np.stack(np.broadcast_arrays(np.arange(n)[:, None], np.array([2, 3, 17])[None, :]), -1)
    np.testing.assert_array_equal(tr.xy[:, :, 0], expected.astype(np.float32))


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_column", r"missing column.*'y'"),
        ("misspelt_column", r"missing column.*'bodypart'.*bodyprt.*misspelt"),
        ("x_as_strings", r"column 'x' has type string, expected numeric"),
        ("empty", r"no rows"),
        ("corrupt", r"corrupt or unreadable parquet"),
        ("negative_frame", r"negative frame number -3"),
        ("nan_xy", r"1 row\(s\) with NaN"),
        ("inf_xy", r"1 row\(s\) with NaN/inf"),
        ("mouse_zero", r"mouse_id 0 < 1"),
        ("null_mouse", r"null values in column mouse_id"),
        ("null_bodypart", r"null values in column 'bodypart'"),
        ("missing_file", r"tracking file not found"),
    ],
)
def test_read_tracking_bad_input(tmp_path, case, pattern):
    path = tmp_path / "train_tracking" / "LabX" / "777.parquet"
    t = _tracking_table(ROWS)
    if case == "missing_column":
        _write(t.drop(["y"]), path)
    elif case == "misspelt_column":
        _write(t.rename_columns(["video_frame", "mouse_id", "bodyprt", "x", "y"]), path)
    elif case == "x_as_strings":
        _write(t.set_column(3, "x", pa.array([str(v) for v in t.column("x").to_pylist()])), path)
    elif case == "empty":
        _write(t.slice(0, 0), path)
    elif case == "corrupt":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PAR1 garbage garbage garbage")
    elif case == "negative_frame":
        _write(_tracking_table(ROWS + [(-3, 1, "nose", 0.0, 0.0)]), path)
    elif case == "nan_xy":
        _write(_tracking_table(ROWS + [(1, 1, "nose", float("nan"), 0.0)]), path)
    elif case == "inf_xy":
        _write(_tracking_table(ROWS + [(1, 1, "nose", 0.0, float("-inf"))]), path)
    elif case == "mouse_zero":
        _write(_tracking_table(ROWS + [(1, 0, "nose", 0.0, 0.0)]), path)
    elif case == "null_mouse":
        _write(_tracking_table(ROWS + [(1, None, "nose", 0.0, 0.0)]), path)
    elif case == "null_bodypart":
        _write(_tracking_table(ROWS + [(1, 1, None, 0.0, 0.0)]), path)
    with pytest.raises(MabeDataError, match=pattern) as exc:
        read_tracking(path)
    assert "777.parquet" in str(exc.value) and "video 777" in str(exc.value)


# ----------------------------------------------------------------------------------------- annotations
def _ann(rows):
    a, t, act, s, e = zip(*rows)
    return pa.table(
        {
            "agent_id": pa.array(a, pa.int8()),
            "target_id": pa.array(t, pa.int8()),
            "action": pa.array(act),
            "start_frame": pa.array(s, pa.int32()),
            "stop_frame": pa.array(e, pa.int32()),
        }
    )


def test_read_annotations_ints(tmp_path):
    p = _write(_ann([(1, 2, "sniff", 0, 10), (2, 2, "rear", 5, 5)]), tmp_path / "9.parquet")
    df = read_annotations(p)
    assert list(df.columns) == ["agent_id", "target_id", "action", "start_frame", "stop_frame"]
    assert [str(d) for d in df.dtypes] == ["int64", "int64", "str", "int64", "int64"]
    assert df.values.tolist() == [[1, 2, "sniff", 0, 10], [2, 2, "rear", 5, 5]]


@pytest.mark.parametrize(
    "rows, pattern",
    [
        ([(1, 2, "sniff", 10, 5)], r"start_frame 10 > stop_frame 5"),
        ([(1, 2, "sniff", -1, 5)], r"negative start_frame -1"),
        ([(1, 2, "dance", 0, 5)], r"unknown action"),
        ([(1, 1, "sniff", 0, 5)], r"self actions need target == agent"),
    ],
)
def test_read_annotations_bad_input(tmp_path, rows, pattern):
    p = _write(_ann(rows), tmp_path / "31.parquet")
    with pytest.raises(MabeDataError, match=pattern) as exc:
        read_annotations(p)
    assert "31.parquet" in str(exc.value) and "video 31" in str(exc.value)


def test_read_annotations_missing_column(tmp_path):
    p = _write(_ann([(1, 2, "sniff", 0, 5)]).drop(["stop_frame"]), tmp_path / "32.parquet")
    with pytest.raises(MabeDataError, match=r"32\.parquet.*video 32.*missing column.*stop_frame"):
        read_annotations(p)


# ----------------------------------------------------------------------------------------- video level
def _meta_row(video_id=777, whitelist='["mouse1,mouse2,sniff", "mouse2,mouse1,sniff"]'):
    return pd.Series(
        {
            "video_id": video_id,
            "lab_id": "LabX",
            "frames_per_second": 30.0,
            "pix_per_cm_approx": 10.0,
            "behaviors_labeled": whitelist,
        }
    )


def test_annotation_naming_untracked_mouse(tmp_path):
    tp = _write(_tracking_table(ROWS), tmp_path / "train_tracking" / "LabX" / "777.parquet")
    ap = _write(_ann([(1, 3, "sniff", 0, 2)]), tmp_path / "train_annotation" / "LabX" / "777.parquet")
    with pytest.raises(MabeDataError, match=r"777\.parquet.*video 777.*mouse \[3\] that is not tracked"):
        load_video(tmp_path, "train", _meta_row(), FeatureSettings())
    assert kaggle_paths(tmp_path, "train", "LabX", 777) == (tp, ap)


def test_listed_video_without_tracking_file(tmp_path):
    with pytest.raises(MabeDataError, match=r"video 777.*no tracking file"):
        load_video(tmp_path, "train", _meta_row(), FeatureSettings())


def test_whitelisted_mouse_with_no_valid_point(tmp_path):
    rows = [(f, 1, "nose", 1.0, 2.0) for f in range(3)]  # mouse 2 has no row at all
    p = _write(_tracking_table(rows), tmp_path / "777.parquet")
    with pytest.raises(MabeDataError, match=r"777\.parquet.*video 777.*mouse 2 .*no valid tracked point"):
        video_features(_meta_row(), read_tracking(p), FeatureSettings(), source=p)
    # a mouse whose only rows are body parts the canonical skeleton ignores has no valid point either
    rows += [(f, 2, "forepaw_left", 1.0, 2.0) for f in range(3)]
    p = _write(_tracking_table(rows), tmp_path / "777.parquet")
    with pytest.raises(MabeDataError, match="mouse 2 .*no valid tracked point"):
        video_features(_meta_row(), read_tracking(p), FeatureSettings(), source=p)


def test_unannotated_video_has_no_pairs(tmp_path):
    p = _write(_tracking_table(ROWS), tmp_path / "777.parquet")
    vf = video_features(_meta_row(whitelist=float("nan")), read_tracking(p), FeatureSettings())
    assert vf.pairs == [] and vf.x.shape == (0, 3, FeatureSettings().num_features) and vf.labels is None


def test_whitelisted_mouse_the_metadata_does_not_list_is_dropped(tmp_path):
    # real quirk: 3-mouse AdaptableSnail videos whitelist mouse4; here 2 listed mice and a mouse3 whitelist
    p = _write(_tracking_table(ROWS), tmp_path / "777.parquet")
    row = _meta_row(whitelist='["mouse1,mouse2,sniff", "mouse1,mouse3,sniff", "mouse3,self,rear"]')
    row = pd.concat(
        [
            row,
            pd.Series(
                {
                    "mouse1_strain": "CD-1",
                    "mouse2_strain": "CD-1",
                    "mouse3_strain": None,
                    "mouse1_color": "white",
                    "mouse2_color": "white",
                    "mouse3_color": None,
                }
            ),
        ]
    )
    vf = video_features(row, read_tracking(p), FeatureSettings())
    assert vf.pairs == [(1, 2)] and vf.counts["unlisted_pairs"] == 2
    # the same whitelist with mouse3 listed in the metadata but untracked is bad input
    row["mouse3_strain"] = "CD-1"
    with pytest.raises(MabeDataError, match="mouse 3 .*no valid tracked point"):
        video_features(row, read_tracking(p), FeatureSettings())


# ----------------------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    st.sets(
        st.tuples(st.integers(0, 30), st.integers(1, 4), st.sampled_from(["nose", "neck", "tail_base"])),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 2**31),
)
def test_read_tracking_round_trips_long_rows(tmp_path_factory, keys, seed):
    """Dense -> long again gives exactly the rows written (every row lands in its cell, nothing else set)."""
    rng = np.random.default_rng(seed % 2**32)
    keys = sorted(keys)
    vals = rng.normal(0, 100, size=(len(keys), 2)).astype(np.float32)
    order = rng.permutation(len(keys))  # file order must not matter
    rows = [(keys[i][0], keys[i][1], keys[i][2], float(vals[i, 0]), float(vals[i, 1])) for i in order]
    p = _write(_tracking_table(rows), tmp_path_factory.mktemp("h") / "1.parquet")
    tr = read_tracking(p)
    assert tr.n_frames == max(k[0] for k in keys) + 1
    back = {
        (f, tr.mouse_ids[m], tr.bodyparts[k]): tuple(tr.xy[f, m, k])
        for f, m, k in zip(*np.nonzero(~np.isnan(tr.xy[..., 0])))
    }
    assert back == {k: (vals[i, 0], vals[i, 1]) for i, k in enumerate(keys)}
