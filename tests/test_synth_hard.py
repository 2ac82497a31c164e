"""`features.synth --difficulty hard`: same Kaggle layout, deterministic per seed, and the annotator's
lab-style rules hold where they can be checked by hand. Easy (the default) is untouched."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import test_synth as base  # the layout checks of the easy generator, reused on hard data

from features import synth
from features.synth.hard import BOUNDARY, MISS, CONFUSABLE, annotate_hard, lab_style


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    out = tmp_path_factory.mktemp("hard") / "synth"
    summary = synth.generate(out, n_videos=10, n_frames=1200, seed=7, test_videos=3, difficulty="hard")
    return out, summary


LAYOUT_CHECKS = ["test_layout_files_exist", "test_metadata_columns_and_dtypes_match_real",
                 "test_rows_imitate_real_rows_of_their_lab", "test_duration_matches_tracking_frames",
                 "test_tracking_long_format_missing_rows_never_nan", "test_annotations_valid",
                 "test_test_solution_and_sample_submission_formats", "test_reads_back_through_features_io"]


@pytest.mark.parametrize("check", LAYOUT_CHECKS)
def test_hard_writes_the_same_kaggle_layout(hard, check):
    getattr(base, check)(hard)


def test_hard_is_marked_and_counts_what_the_annotator_dropped(hard):
    out, summary = hard
    marker = json.loads((out / synth.MARKER).read_text())
    assert marker["args"]["difficulty"] == "hard" and summary["difficulty"] == "hard"
    h = summary["hard"]
    assert h["decoys"] > 0 and h["missed"] > 0 and h["too_short"] > 0


def test_hard_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(n_videos=2, n_frames=500, test_videos=1, labs=["TranquilPanther", "AdaptableSnail"],
              difficulty="hard")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synth.generate(tmp_path / name, seed=seed, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    sol = "test_solution.csv"
    assert (tmp_path / "a" / sol).read_bytes() != (tmp_path / "c" / sol).read_bytes()
    # and the same seed in easy mode is another dataset (the style changes labels, lengths, scenes)
    synth.generate(tmp_path / "e", seed=3, **{**kw, "difficulty": "easy"})
    assert "difficulty" not in json.loads((tmp_path / "e" / synth.MARKER).read_text())["args"]
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "e" / "train.csv").read_bytes()


def test_lab_style_is_seeded_per_lab_and_in_range():
    a, b = lab_style("AdaptableSnail", 0), lab_style("AdaptableSnail", 0)
    assert a == b and a != lab_style("AdaptableSnail", 1) and a.prior != lab_style("TranquilPanther", 0).prior
    assert BOUNDARY[0] <= a.boundary <= BOUNDARY[1]
    assert all(MISS[0] <= v <= MISS[1] for v in a.miss.values())
    assert a.max_dist["rear"] == np.inf and np.isfinite(a.max_dist["sniff"])
    assert all(n in synth.MOTIFS for v in CONFUSABLE.values() for n in v)


def test_lab_contrast_stretches_the_spread_between_labs_from_the_same_draws():
    one, same = lab_style("AdaptableSnail", 0), lab_style("AdaptableSnail", 0, contrast=1.0)
    assert one == same  # contrast 1: the hard twin as before
    flat = [lab_style(lab, 0, contrast=0.0) for lab in ("AdaptableSnail", "TranquilPanther")]
    assert flat[0].max_dist == flat[1].max_dist  # contrast 0: every lab's cut-offs and lags alike
    assert set(flat[0].min_dur.values()) == {0.2} and set(flat[0].lag.values()) == {0.0}
    wide = lab_style("AdaptableSnail", 0, contrast=3.0)
    assert wide.prior == one.prior and wide.miss == one.miss and wide.boundary == one.boundary
    for act in one.lag:
        assert abs(wide.lag[act] - 3 * one.lag[act]) <= 0.002
        assert abs((wide.min_dur[act] - 0.2) - 3 * (one.min_dur[act] - 0.2)) <= 0.002
        if np.isfinite(one.max_dist[act]):  # factor ** 3: base x f ** 3 = (base x f) ** 3 / base ** 2
            base = flat[0].max_dist[act]
            assert wide.max_dist[act] == pytest.approx(one.max_dist[act] ** 3 / base ** 2, rel=0.02)


def test_lab_contrast_flag_is_hard_only(tmp_path):
    with pytest.raises(SystemExit) as exc:
        synth.parse_args(["--out", "x", "--lab-contrast", "2"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        synth.parse_args(["--out", "x", "--difficulty", "hard", "--lab-contrast", "-1"])
    assert exc.value.code == 2
    assert synth.parse_args(["--out", "x", "--difficulty", "hard", "--lab-contrast", "3"]).lab_contrast == 3.0
    args = ["--videos", "1", "--frames", "400", "--test-videos", "0", "--labs", "TranquilPanther",
            "--difficulty", "hard"]
    assert synth.main(["--out", str(tmp_path / "c3"), *args, "--lab-contrast", "3"]) == 0
    assert synth.main(["--out", str(tmp_path / "c1"), *args]) == 0
    marks = {c: json.loads((tmp_path / c / "synth.json").read_text()) for c in ("c3", "c1")}
    assert marks["c3"]["args"]["lab_contrast"] == 3.0 and "lab_contrast" not in marks["c1"]["args"]


def _style(**kw):
    s = lab_style("TranquilPanther", 0)
    zero = {k: 0.0 for k in s.miss}
    return replace(s, **{"miss": zero, "lag": zero, "min_dur": zero, **kw})


def _far_apart(n: int, length: int, fps: float):
    """n planted sniff events of distinct pairs (no overlaps), `length` frames each."""
    return [(i, i + 1000, "sniff", 100, 100 + length) for i in range(n)]


def test_duration_cutoff_drops_events_shorter_than_it():
    fps = 30.0
    style = _style(boundary=0.2, min_dur={k: 1.0 for k in lab_style("x", 0).miss})
    events = [(i, i + 1000, "sniff", 100, 100 + n) for i, n in enumerate(range(10, 60))]
    out, _, counts = annotate_hard(events, 1000, fps, np.random.default_rng(0), style)
    assert out and all(e - s >= 30 for _, _, _, s, e in out)
    kept = {a for a, *_ in out}
    # the noise moves each boundary by at most 0.2 s = 6 frames: shorter than 18 never, longer than 42 always
    assert all(a not in kept for a, _, _, s, e in events if e - s < 18)
    assert all(a in kept for a, _, _, s, e in events if e - s > 42)
    assert counts["too_short"] == len(events) - len(out)


def test_missed_event_rate_matches_the_lab_style():
    style = _style(miss={k: 0.2 for k in lab_style("x", 0).miss}, boundary=0.2)
    events = _far_apart(4000, 60, 30.0)
    out, _, counts = annotate_hard(events, 1000, 30.0, np.random.default_rng(1), style)
    assert counts["missed"] + len(out) == 4000
    assert abs(counts["missed"] / 4000 - 0.2) < 0.02  # binomial sd 0.0063


def test_boundary_noise_is_bounded_by_half_a_second_and_lag_shifts_starts():
    fps = 30.0
    style = _style(boundary=0.5)
    events = _far_apart(2000, 90, fps)
    out, _, _ = annotate_hard(events, 1000, fps, np.random.default_rng(2), style)
    ds = np.array([s - 100 for _, _, _, s, _ in out])
    de = np.array([e - 190 for _, _, _, _, e in out])
    assert np.abs(ds).max() <= 15 and np.abs(de).max() <= 15  # 0.5 s at 30 fps
    assert np.abs(ds).max() >= 13 and abs(ds.mean()) < 1.0  # it does use the width, centred
    lagged = _style(boundary=0.2, lag={k: 0.4 for k in lab_style("x", 0).miss})
    out, _, _ = annotate_hard(events, 1000, fps, np.random.default_rng(2), lagged)
    ds = np.array([s - 100 for _, _, _, s, _ in out])
    assert 12 - 6 <= ds.min() and ds.max() <= 12 + 6  # 0.4 s lag +- 0.2 s noise


def test_distance_cutoff_leaves_far_look_alikes_unlabelled():
    style = _style(boundary=0.2)
    cut = style.max_dist["sniff"]
    events = _far_apart(100, 60, 30.0)
    dist = [cut * (0.5 if i % 2 else 1.5) for i in range(100)]
    out, _, counts = annotate_hard(events, 1000, 30.0, np.random.default_rng(3), style, dist)
    assert {a for a, *_ in out} == set(range(1, 100, 2)) and counts["too_far"] == 50


def test_cli_difficulty_flag(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path / "d"), "--videos", "1", "--frames", "400", "--test-videos", "0",
                       "--labs", "TranquilPanther", "--difficulty", "hard"]) == 0
    text = capsys.readouterr().out
    assert "hard: look-alike scenes left unlabelled" in text
    default = synth.parse_args(["--out", "x"])
    assert default.difficulty == "easy" and default.frames == 3000
    assert synth.parse_args(["--out", "x", "--difficulty", "hard"]).frames == 6000
    with pytest.raises(SystemExit) as exc:
        synth.parse_args(["--out", "x", "--difficulty", "insane"])
    assert exc.value.code == 2



def test_calibration_oracle_easy_near_one_hard_well_below():
    from bench.synth_calibration import oracle
    easy, hard = oracle("easy", 0, 5, 1000), oracle("hard", 0, 5, 1000)
    assert set(easy) == {"oracle"}
    assert set(hard) == {"oracle", "oracle_avg_style", "oracle_lab_style"}
    assert easy["oracle"] > 0.9 and hard["oracle"] < easy["oracle"] - 0.15
    # knowing the lab's style can only bring the planted episodes closer to what the lab wrote
    assert hard["oracle_lab_style"] > hard["oracle"]


def test_apply_style_drops_far_and_short_events_and_adds_the_lag():
    from features.synth.hard import LabStyle, apply_style, average_style

    style = LabStyle("L", {"sniff": 1.0, "rear": 1.0}, min_dur={"sniff": 0.5, "rear": 1.0},
                     max_dist={"sniff": 3.0, "rear": float("inf")}, lag={"sniff": 0.2, "rear": 0.0},
                     miss={"sniff": 0.1, "rear": 0.1}, boundary=0.3, dur_sigma=0.5)
    events = [(1, 2, "sniff", 100, 130),   # 2.0 cm, 30 frames: lag 6 -> (106, 130), 24 >= 15 kept
              (1, 2, "sniff", 200, 210),   # lag 6 -> 4 frames left < 15: too short
              (1, 2, "sniff", 300, 400),   # 3.5 cm > 3.0: too far
              (1, 1, "rear", 500, 530),    # self: no cut-off, 30 >= 30 kept, no lag
              (1, 1, "rear", 598, 600)]    # lag 0, 2 frames < 30: too short
    dist = [2.0, 2.0, 3.5, 0.0, 0.0]
    kept = apply_style(events, dist, style, 30.0, 600)
    assert kept == [(1, 2, "sniff", 106, 130), (1, 1, "rear", 500, 530)]
    other = LabStyle("M", style.prior, {"sniff": 1.5, "rear": 0.0}, {"sniff": 5.0, "rear": float("inf")},
                     {"sniff": 0.0, "rear": 0.4}, style.miss, 0.5, 0.3)
    avg = average_style([style, other])
    assert avg.min_dur == {"sniff": 1.0, "rear": 0.5} and avg.max_dist == {"sniff": 4.0, "rear": float("inf")}
    assert avg.lag == {"sniff": 0.1, "rear": 0.2} and avg.boundary == 0.4
