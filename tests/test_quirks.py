"""Real-data quirks (issue 14, item 1), each with a hand-computed expectation: labels of 25-fps videos made on
a 30-fps axis, positions resampled (low-passed) before kinematics, angles never interpolated across +-180,
`max_gap_s` in seconds, the training-only exclude list and bad videos skipped (listed in meta.json).
Predict's side (mapping back, missing mouse) is in test_export_predict.py; the synthetic twin's
`--fps-quirk` in test_synth.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_cache import write_annotations, write_tracking

from features import quirks
from features.cache import FeatureCache, build_cache
from features.errors import MabeDataError
from features.io import META_COLUMNS, Tracking, packaged_metadata
from features.labels import CLASS_OF
from features.pipeline import FeatureSettings, video_features
from features.resample import decimation_width, lowpass, make_plan

SNAIL = "AdaptableSnail"


# ------------------------------------------------------------------------------------------ fps quirk
def test_the_rule_selects_exactly_the_four_known_videos():
    meta = pd.read_csv(packaged_metadata("train"))
    hit = [int(v) for v, lab, fps in zip(meta.video_id, meta.lab_id, meta.frames_per_second)
           if quirks.label_fps(lab, fps) != fps]
    assert sorted(hit) == sorted(quirks.KNOWN_LABEL_FPS_VIDEOS)
    assert sorted(hit) == [143861384, 878123481, 1212811043, 1596473327]
    assert set(quirks.KNOWN_BAD_LABELS) <= set(quirks.KNOWN_LABEL_FPS_VIDEOS)


def test_label_axis_to_tracking_axis_and_back_hand_values():
    # label (30-fps axis) -> tracking (25 fps): round(f * 25 / 30), halves up:
    # 0 -> 0; 3 -> 2.5 -> 3; 6 -> 5; 100 -> 83.33 -> 83; 107970 (3,599 s at 30 fps) -> 89975 (3,599 s at 25)
    np.testing.assert_array_equal(quirks.label_to_tracking([0, 3, 6, 100, 107970], SNAIL, 25.0),
                                  [0, 3, 5, 83, 89975])
    # tracking -> label: round(g * 30 / 25): 1 -> 1.2 -> 1; 2 -> 2.4 -> 2; 3 -> 3.6 -> 4; 5 -> 6;
    # 83 -> 99.6 -> 100
    np.testing.assert_array_equal(quirks.tracking_to_label([0, 1, 2, 3, 5, 83, 89975], SNAIL, 25.0),
                                  [0, 1, 2, 4, 6, 100, 107970])
    # tracking -> label -> tracking is exact (|round(6g/5) * 5/6 - g| <= 5/12 < 1/2)
    g = np.arange(100_000)
    np.testing.assert_array_equal(
        quirks.label_to_tracking(quirks.tracking_to_label(g, SNAIL, 25.0), SNAIL, 25.0), g)
    # other videos are unchanged: AdaptableSnail at 30 fps, another lab at 25 fps
    for lab, fps in ((SNAIL, 30.0), ("CautiousGiraffe", 25.0)):
        np.testing.assert_array_equal(quirks.label_to_tracking([3, 100], lab, fps), [3, 100])
        np.testing.assert_array_equal(quirks.tracking_to_label([3, 100], lab, fps), [3, 100])
    # predicted intervals [start, stop) on the tracking axis -> label axis: [50, 100) -> [60, 120),
    # [1, 3) -> [1, 4)
    assert quirks.events_to_label_axis([(50, 100, 7), (1, 3, 2)], SNAIL, 25.0) == [(60, 120, 7), (1, 4, 2)]
    assert quirks.events_to_label_axis([(50, 100, 7)], SNAIL, 30.0) == [(50, 100, 7)]


def _body(T: int, M: int, heading_deg=None, x_px=None) -> Tracking:
    """M mice, parts nose / ears / tail_base; mouse m's tail at (200 m, 100) px plus x_px[t, m] along x, its
    body axis (40 px) pointing heading_deg[t, m] (default 0 = +x)."""
    parts = ["nose", "ear_left", "ear_right", "tail_base"]
    h = np.radians(np.zeros((T, M)) if heading_deg is None else heading_deg)
    dx = np.zeros((T, M)) if x_px is None else x_px
    u = np.stack([np.cos(h), np.sin(h)], -1)  # body axis
    n = np.stack([-np.sin(h), np.cos(h)], -1)  # its normal
    tail = np.stack([200.0 * np.arange(1, M + 1)[None, :] + dx, np.full((T, M), 100.0)], -1)
    local = {"nose": (40, 0), "ear_left": (30, 5), "ear_right": (30, -5), "tail_base": (0, 0)}
    xy = np.stack([tail + a * u + b * n for a, b in (local[p] for p in parts)], axis=2)
    return Tracking(xy.astype(np.float32), list(range(1, M + 1)), parts)


def _row(lab=SNAIL, fps=25.0, whitelist='["mouse1,mouse2,chase", "mouse1,self,rear"]') -> pd.Series:
    return pd.Series({"video_id": 5, "lab_id": lab, "frames_per_second": fps, "pix_per_cm_approx": 10.0,
                      "behaviors_labeled": whitelist})


def test_pipeline_maps_quirk_labels_onto_the_tracking_axis():
    ann = pd.DataFrame({"agent_id": [1, 1], "target_id": [2, 2], "action": ["chase", "attack"],
                        "start_frame": [60, 96], "stop_frame": [120, 132]})
    row = _row(whitelist='["mouse1,mouse2,chase", "mouse1,mouse2,attack"]')
    s = FeatureSettings(target_fps=None)  # 25-fps frames kept: labels compared on the tracking axis
    vf = video_features(row, _body(100, 2), s, ann)
    # chase [60, 120) on the 30-fps axis = [60 * 25/30, 120 * 25/30) = [50, 100); attack [96, 132) ->
    # [80, 110), shorter wins on [80, 100); 110 - 100 = 10 frames past the end are clipped (read as-is:
    # 20 + 32 = 52)
    expect = np.zeros(100, dtype=np.int8)
    expect[50:80], expect[80:100] = CLASS_OF["chase"], CLASS_OF["attack"]
    np.testing.assert_array_equal(vf.labels[vf.pairs.index((1, 2))], expect)
    assert vf.counts["remapped_events"] == 2 and vf.counts["clipped_frames"] == 10
    # predictions go back the other way: [50, 100) tracking frames -> [60, 120) on the label axis
    assert vf.label_fps == 30.0 and vf.to_label_axis([(50, 100, 7)]) == [(60, 120, 7)]
    # --no-fix-label-fps (the old behaviour, for comparisons): frame numbers as written, nothing mapped back
    off = video_features(row, _body(100, 2), FeatureSettings(target_fps=None, fix_label_fps=False), ann)
    assert off.counts["remapped_events"] == 0 and off.counts["clipped_frames"] == 52
    assert off.to_label_axis([(50, 100, 7)]) == [(50, 100, 7)]
    # the same annotations in a lab labelled on its own axis stay where they are
    vf = video_features(row.copy().replace({SNAIL: "CautiousGiraffe"}), _body(100, 2), s, ann)
    assert vf.counts["remapped_events"] == 0 and vf.counts["clipped_frames"] == 52
    assert (vf.labels[0, 60:96] == CLASS_OF["chase"]).all()
    assert (vf.labels[0, 96:] == CLASS_OF["attack"]).all()


# ------------------------------------------------------------------------------------------ kinematics
def test_lowpass_hand_values():
    # round(fps / 30): 120 -> 4, 60 -> 2, 45 -> 1.5 -> 2; no low-pass when not decimating
    widths = [decimation_width(make_plan(10, f, t)) for f, t in ((120.0, 30.0), (60.0, 30.0), (45.0, 30.0),
                                                                 (25.0, 30.0), (30.0, None))]
    assert widths == [4, 2, 2, 1, 1]
    # width 4 = taps [.5, 1, 1, 1, .5] / 4. Jitter 0, 1, 0, 1, ...: inside (.5*0 + 1 + 0 + 1 + .5*0) / 4 = .5;
    # frame 1 sees the reflected frame -1 = 2*x0 - x1 = -1: (.5*-1 + 0 + 1 + 0 + .5*1) / 4 = .25; ends kept
    np.testing.assert_allclose(lowpass(np.array([0, 1, 0, 1, 0, 1, 0, 1.0]), 4),
                               [0, 0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(lowpass(np.arange(8.0), 4), np.arange(8.0))  # a constant velocity passes


def test_120fps_jitter_is_low_passed_before_speed_is_taken():
    s = FeatureSettings(target_fps=30.0)
    col = s.feature_names().index("a_speed")
    t = np.arange(121)  # 120 fps, 1 s -> 31 frames at 30 fps
    # mouse 1 moving +1 px per 120-fps frame: 120 px/s / 10 px/cm = 12 cm/s at every 30-fps frame
    vf = video_features(_row(lab="LyricalHare", fps=120.0), _body(121, 2, x_px=np.stack([t, 0 * t], 1)), s)
    assert vf.n_frames == 31
    np.testing.assert_allclose(vf.x[vf.pairs.index((1, 2)), :, col] * 50.0, 12.0, rtol=1e-4)
    # mouse 1 at rest with 1-px tracker jitter (x + 0, 1, 0, 1, ...): differentiated at 120 fps that was
    # 1 px * 120 / 10 = 12 cm/s everywhere; low-passed (0.5 px inside) and taken at 30 fps it is 0 inside
    jitter = _body(121, 2, x_px=np.stack([t % 2, 0 * t], 1))
    vf = video_features(_row(lab="LyricalHare", fps=120.0), jitter, s)
    speed = vf.x[vf.pairs.index((1, 2)), :, col] * 50.0
    np.testing.assert_allclose(speed[2:30], 0.0, atol=1e-4)
    assert speed.max() <= 1.5 + 1e-4  # the ends: 0 -> 0.5 px in one 30-fps frame = 1.5 cm/s


def test_heading_diff_is_not_interpolated_across_the_wrap():
    # 25 fps -> 30 fps: resampled frame 3 sits at 25-fps position 2.5, midway between frames 2 and 3. The
    # target's heading jumps 179 -> -179 deg there (agent heading 0): midway the heading difference is 180
    # (the body axes (cos 179, +-sin 179) average to (cos 179, 0)); interpolating the feature itself gave 0.
    h = np.zeros((6, 2))
    h[:3, 1], h[3:, 1] = 179.0, -179.0
    s = FeatureSettings(target_fps=30.0)
    vf = video_features(_row(lab="CautiousGiraffe"), _body(6, 2, heading_deg=h), s)
    names = s.feature_names()
    x = vf.x[vf.pairs.index((1, 2))]
    assert abs(x[3, names.index("heading_diff")] * 180.0) == pytest.approx(180.0, abs=0.01)
    assert x[3, names.index("heading_diff_cos")] == pytest.approx(-1.0, abs=1e-6)
    np.testing.assert_allclose(x[[0, 6], names.index("heading_diff")] * 180.0, [179.0, -179.0], atol=1e-3)


# ------------------------------------------------------------------------------------------ max_gap_s
def test_max_gap_is_in_seconds():
    s = FeatureSettings()
    # default 1/3 s = today's 10 frames at 30 fps; rounded to the video's frames: 40 at 120 fps,
    # 10/3 = 3.33 -> 3 at 10 fps, 25/3 = 8.33 -> 8 at 25 fps
    assert [s.gap_frames(f) for f in (30.0, 120.0, 10.0, 25.0)] == [10, 40, 3, 8]
    # old caches / checkpoints stored max_gap = frames (meant at 30 fps): 10 -> 1/3 s, 3 -> 0.1 s
    assert FeatureSettings.from_dict({"max_gap": 10}).max_gap_s == pytest.approx(1 / 3)
    assert FeatureSettings.from_dict({"max_gap": 3, "target_fps": None}).gap_frames(30.0) == 3
    with pytest.raises(ValueError):
        FeatureSettings(max_gap_s=-1)
    # pipeline: nose x = 0 px, then a gap, then 40 px (motion set, raw points by name: nose = slot p02;
    # 10 px/cm, scale 50 cm). max_gap_s = 0.3: at 10 fps a 4-frame gap (0.4 s > 3 frames) is held at 0 (old
    # max_gap=10 frames: filled); at 120 fps a 30-frame gap (0.25 s <= 36 frames) is interpolated,
    # 40 * k / 31 px for k = 1..30 (old: held). The raw points are a strided view: fill_gaps used to drop
    # its fill on such input (it filled a reshaped copy), leaving the gap at 0 even below max_gap.
    s = FeatureSettings(feature_set="motion", target_fps=None, max_gap_s=0.3)
    col = s.feature_names().index("m0_p02_x")
    for fps, gap, expect in ((10.0, 4, np.zeros(4)), (120.0, 30, 40.0 * np.arange(1, 31) / 31)):
        tr = _body(40, 2)
        tr.xy[:, 0] -= tr.xy[:1, 0, :1]  # mouse 1's nose (point 0) at (0, 0) px
        tr.xy[5 + gap:, 0, :, 0] += 40.0
        tr.xy[5:5 + gap, 0] = np.nan  # mouse 1 not tracked in frames 5 .. 5 + gap - 1
        vf = video_features(_row(lab="L", fps=fps), tr, s)
        got = vf.x[vf.pairs.index((1, 2)), 5:5 + gap, col] * 10.0 * 50.0
        np.testing.assert_allclose(got, expect, atol=1e-3)


# ------------------------------------------------------------------------------------------ cache build
def _snail_set(root, n_frames=120):
    """Three real 25-fps AdaptableSnail rows (the known bad 1212811043 among them), labels on the 30-fps
    axis."""
    meta = pd.read_csv(packaged_metadata("train"))
    meta = meta[meta.video_id.isin([143861384, 878123481, 1212811043])].reset_index(drop=True)
    root.mkdir(parents=True, exist_ok=True)
    meta[list(META_COLUMNS)].to_csv(root / "train.csv", index=False)
    for i, r in meta.iterrows():
        write_tracking(root / "train_tracking" / SNAIL / f"{r.video_id}.parquet", n_frames, [1, 2, 3, 4],
                       json.loads(r.body_parts_tracked), seed=i, drop=0.0)
        write_annotations(root / "train_annotation" / SNAIL / f"{r.video_id}.parquet",
                          [(1, 2, "chase", 12, 48)])
    return meta


def test_cache_maps_labels_excludes_known_bad_and_skips_a_bad_video(tmp_path, capsys):
    from features.build import main

    root = tmp_path / "data"
    _snail_set(root)
    s = build_cache(root, tmp_path / "c", FeatureSettings(target_fps=None), n_folds=2, progress=False)
    cache = FeatureCache(tmp_path / "c")
    # default --exclude-videos = the known-bad 1212811043: left out and recorded
    assert cache.meta["exclude_videos"] == [1212811043] and cache.meta["excluded_videos"] == [1212811043]
    assert sorted(cache.video_ids) == [143861384, 878123481] and cache.meta["skipped_videos"] == []
    # chase [12, 48) on the 30-fps axis -> [10, 40) tracking frames (12 * 25/30 = 10, 48 * 25/30 = 40)
    y = np.asarray(cache.y(143861384))[cache.pairs(143861384).index((1, 2))]
    assert np.flatnonzero(y).tolist() == list(range(10, 40)) and s["remapped_events"] == 2
    # a corrupt tracking file: skipped with a one-line warning and listed with its reason (--strict aborts)
    bad = root / "train_tracking" / SNAIL / "878123481.parquet"
    bad.write_bytes(b"not a parquet")
    main(["--data", str(root), "--out", str(tmp_path / "c"), "--target-fps", "none", "--folds", "2",
          "--exclude-videos", "none", "--no-progress"])
    out = capsys.readouterr()
    assert "warning: skipping video 878123481" in out.err and "corrupt" in out.err
    assert "skipped 1 bad video(s)" in out.out
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert [v["video_id"] for v in meta["skipped_videos"]] == [878123481]
    reason = meta["skipped_videos"][0]["reason"]
    assert "878123481.parquet" in reason and "corrupt" in reason and "\n" not in reason
    assert meta["exclude_videos"] == [] and meta["excluded_videos"] == []
    assert sorted(FeatureCache(tmp_path / "c").video_ids) == [143861384, 1212811043]
    with pytest.raises(MabeDataError, match="video 878123481.*corrupt"):
        build_cache(root, tmp_path / "c", FeatureSettings(target_fps=None), n_folds=2, progress=False,
                    exclude_videos=(), strict=True)  # an up-to-date cache with skipped videos is rebuilt
    assert json.loads((tmp_path / "c" / "meta.json").read_text()) == meta  # the old cache is intact
