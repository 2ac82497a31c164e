"""Hand-computed motion / pair features, resampling both ways, and the pipeline's units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import motion
from features.io import Tracking
from features.labels import CLASS_OF
from features.pipeline import FeatureSettings, video_features
from features.resample import make_plan, resample_linear, resample_nearest, to_original
from features.skeleton import CANONICAL, INDEX

C = len(CANONICAL)


def test_speed_of_mouse_moving_one_px_per_frame():
    # +1 px/frame at 30 fps, 10 px/cm: 0.1 cm/frame * 30 frames/s = 3 cm/s
    x_px = np.arange(10, dtype=float)
    p_cm = np.stack([x_px, np.zeros(10)], axis=1) / 10.0
    np.testing.assert_allclose(motion.speed(p_cm, 30.0), 3.0)
    np.testing.assert_allclose(motion.acceleration(p_cm, 30.0), 0.0, atol=1e-9)  # constant speed


def test_acceleration_hand_value():
    # steps of 1, 2, 3, 4 px per frame at 10 fps -> speeds 10, 20, 30, 40 px/s -> acceleration 100 px/s^2
    p = np.stack([np.array([0, 1, 3, 6, 10], dtype=float), np.zeros(5)], axis=1)
    np.testing.assert_allclose(motion.speed(p, 10.0), [10, 10, 20, 30, 40])  # frame 0 copies frame 1
    np.testing.assert_allclose(motion.acceleration(p, 10.0)[2:], [100, 100, 100])


def test_heading_wrap_and_turn_rate():
    np.testing.assert_allclose(motion.wrap_deg([180, -180, 190, -190, 360, 0]), [180, 180, -170, 170, 0, 0])
    # heading from +179 deg to -179 deg is a turn of +2 deg (not -358): at fps 1 -> +2 deg/s
    np.testing.assert_allclose(motion.turn_rate(np.array([179.0, -179.0]), 1.0), [2.0, 2.0])
    np.testing.assert_allclose(motion.turn_rate(np.array([-179.0, 179.0]), 30.0), [-60.0, -60.0])
    # body axis pointing +y is 90 deg; pointing -x is 180 deg (not -180)
    assert motion.heading_deg(np.array([0.0, 0.0]), np.array([0.0, 2.0])) == 90.0
    assert motion.heading_deg(np.array([0.0, 0.0]), np.array([-1.0, 0.0])) == 180.0


def test_to_body_frame_hand_value():
    # agent at (1, 1) heading +90 deg (facing +y): a point 5 cm ahead, at (1, 6), is (5, 0) in its frame;
    # a point at (0, 1) (to its left when facing +y) is (0, 1)
    pts = np.array([[[1.0, 6.0], [0.0, 1.0]]])
    got = motion.to_body_frame(pts, np.array([[1.0, 1.0]]), np.array([90.0]))
    np.testing.assert_allclose(got, [[[5.0, 0.0], [0.0, 1.0]]], atol=1e-12)


def _mouse(center, heading_deg, length=8.0):
    """Canonical skeleton [C, 2] of a straight mouse: tail_base -> nose along heading through center."""
    u = np.array([np.cos(np.radians(heading_deg)), np.sin(np.radians(heading_deg))])
    n = np.array([-u[1], u[0]])
    c = np.asarray(center, dtype=float)
    pts = {
        "nose": c + u * length / 2,
        "ear_left": c + u * length / 3 + n,
        "ear_right": c + u * length / 3 - n,
        "neck": c + u * length / 4,
        "body_center": c,
        "hip_left": c - u * length / 4 + n,
        "hip_right": c - u * length / 4 - n,
        "tail_base": c - u * length / 2,
        "tail_tip": c - u * length,
    }
    return np.stack([pts[p] for p in CANONICAL])


def test_pair_features_hand_values():
    names = motion.pair_feature_names()
    col = {n: i for i, n in enumerate(names)}
    # agent at origin facing +x, target 10 cm ahead facing -x (towards the agent), both still
    a = np.repeat(_mouse((0, 0), 0)[None], 3, axis=0)
    t = np.repeat(_mouse((10, 0), 180)[None], 3, axis=0)
    f = motion.pair_features(a, t, 30.0)
    assert f.shape == (3, len(names))
    np.testing.assert_allclose(f[0, col["dist_body_center__body_center"]], 10.0)  # centres 10 cm apart
    np.testing.assert_allclose(f[0, col["dist_nose__nose"]], 2.0)  # noses at 4 and 6
    np.testing.assert_allclose(f[0, col["heading_diff"]], 180.0)  # facing each other
    np.testing.assert_allclose(f[0, col["heading_diff_cos"]], -1.0)
    np.testing.assert_allclose(
        f[0, [col["t_body_center_x"], col["t_body_center_y"]]], [10.0, 0.0], atol=1e-12
    )
    np.testing.assert_allclose(f[0, col["a_body_len"]], 8.0)
    assert f[0, col["is_self"]] == 0 and f[0, col["a_speed"]] == 0


def test_pair_features_rotation_and_translation_invariant():
    rng = np.random.default_rng(1)
    T = 40
    a = rng.normal(0, 5, size=(T, C, 2)).cumsum(0)
    t = rng.normal(0, 5, size=(T, C, 2)).cumsum(0) + 20
    f = motion.pair_features(a, t, 25.0)
    th = np.radians(37.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    shift = np.array([123.0, -45.0])
    g = motion.pair_features(a @ R.T + shift, t @ R.T + shift, 25.0)
    np.testing.assert_allclose(f, g, atol=1e-9)


def test_pair_rich_hand_values():
    names = motion.pair_rich_feature_names()
    col = {n: i for i, n in enumerate(names)}
    assert len(names) == 79 + 81 + 18 + 36 == FeatureSettings(feature_set="pair_rich").num_features
    assert names[:79] == motion.pair_feature_names()  # the pair set first, unchanged
    # agent at the origin facing +x, target 10 cm ahead facing -x (test_pair_features_hand_values' scene)
    a = np.repeat(_mouse((0, 0), 0)[None], 3, axis=0)
    t = np.repeat(_mouse((10, 0), 180)[None], 3, axis=0)
    f = motion.pair_rich_features(a, t, 30.0)
    np.testing.assert_allclose(f[:, :79], motion.pair_features(a, t, 30.0))
    # noses at x=4 and x=6: 2 cm; agent nose (4, 0) to target tail_base (14, 0): 10 cm
    np.testing.assert_allclose(f[0, col["xdist_nose__nose"]], 2.0)
    np.testing.assert_allclose(f[0, col["xdist_nose__tail_base"]], 10.0)
    # agent ear_left (8/3, 1) to target ear_right (facing -x, its right is +y: (10 - 8/3, 1)): 10 - 16/3
    np.testing.assert_allclose(f[0, col["xdist_ear_left__ear_right"]], 10 - 16 / 3)
    # the agent seen from the target: its centre 10 cm straight ahead, its nose 6 cm ahead, its left ear
    # (8/3, 1) -> offset (-22/3, 1) from the target, rotated by -180 deg -> (22/3, -1)
    np.testing.assert_allclose(f[0, [col["tf_body_center_x"], col["tf_body_center_y"]]], [10, 0], atol=1e-12)
    np.testing.assert_allclose(f[0, col["tf_nose_x"]], 6.0)
    np.testing.assert_allclose(f[0, [col["tf_ear_left_x"], col["tf_ear_left_y"]]], [22 / 3, -1], atol=1e-12)
    np.testing.assert_allclose(f[0, col["adist_nose__tail_base"]], 8.0)  # body length
    np.testing.assert_allclose(f[0, col["adist_ear_left__ear_right"]], 2.0)


def test_pair_rich_self_pair_gives_within_mouse_distances():
    a = np.random.default_rng(3).normal(0, 3, size=(4, C, 2))
    names = motion.pair_rich_feature_names()
    f = motion.pair_rich_features(a, a, 30.0, is_self=True)
    x0 = names.index("xdist_nose__nose")
    cross = f[:, x0:x0 + C * C].reshape(-1, C, C)
    np.testing.assert_allclose(np.diagonal(cross, axis1=1, axis2=2), 0.0)
    np.testing.assert_allclose(cross, cross.transpose(0, 2, 1))
    iu = np.triu_indices(C, 1)
    np.testing.assert_allclose(f[:, names.index("adist_nose__ear_left"):], cross[:, iu[0], iu[1]])


def test_pair_rich_rotation_and_translation_invariant():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 5, size=(30, C, 2)).cumsum(0)
    t = rng.normal(0, 5, size=(30, C, 2)).cumsum(0) - 15
    f = motion.pair_rich_features(a, t, 30.0)
    th = np.radians(-113.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    shift = np.array([-7.0, 301.0])
    g = motion.pair_rich_features(a @ R.T + shift, t @ R.T + shift, 30.0)
    np.testing.assert_allclose(f, g, atol=1e-9)


def test_pipeline_pair_rich_extends_pair():
    s = FeatureSettings(feature_set="pair_rich", target_fps=None)
    rich = video_features(_row(), _tracking_moving(), s)
    pair = video_features(_row(), _tracking_moving(), FeatureSettings(target_fps=None))
    assert rich.x.shape == pair.x.shape[:2] + (214,) and np.isfinite(rich.x).all()
    np.testing.assert_array_equal(rich.x[..., :79], pair.x)  # today's columns, bit for bit
    scales = dict(zip(s.feature_names(), s.scales()))
    assert scales["xdist_nose__nose"] == scales["tf_nose_x"] == scales["adist_nose__neck"] == 10


def test_self_pair_uses_agent_for_target():
    a = np.repeat(_mouse((3, 4), 30)[None], 2, axis=0)
    names = motion.pair_feature_names()
    f = motion.pair_features(a, a, 30.0, is_self=True)
    n = 2 * C
    np.testing.assert_allclose(f[:, :n], f[:, n : 2 * n])  # target block == agent block
    assert (f[:, names.index("is_self")] == 1).all()
    np.testing.assert_allclose(f[:, names.index("heading_diff")], 0.0, atol=1e-9)


def test_motion_features_seed_layout_288():
    # 4 mice x 18 points: 144 coordinates + 72 speeds + 72 accelerations = 288
    T = 5
    xy = np.zeros((T, 4, 18, 2))
    xy[:, 2, 5, 0] = np.arange(T) * 2.0  # mouse 2, point 5 moves 2 units/frame along x
    f = motion.motion_features(xy, 30.0)
    assert f.shape == (T, 288)
    k = 2 * 18 + 5
    np.testing.assert_allclose(f[:, 2 * k], np.arange(T) * 2.0)  # its x coordinate
    np.testing.assert_allclose(f[:, 144 + k], 60.0)  # speed 2 * 30 = 60 per second
    np.testing.assert_allclose(f[:, 216 + k], 0.0)  # constant speed
    assert np.count_nonzero(f[:, 144:]) == T  # nothing else moves
    assert len(motion.motion_feature_names(4, [str(i) for i in range(18)])) == 288


def test_features_do_not_mutate_inputs():
    a = np.random.default_rng(0).normal(size=(6, C, 2))
    t = a + 1
    a0, t0 = a.copy(), t.copy()
    motion.pair_features(a, t, 30.0)
    motion.motion_features(a[:, None], 30.0)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(t, t0)


# ------------------------------------------------------------------------------------------ resample
def test_resample_25_to_30_hand_values():
    plan = make_plan(6, 25.0, 30.0)
    assert plan.n_new == 7  # ceil(5 * 1.2) + 1
    # positions j / 1.2 = 0, .833, 1.667, 2.5, 3.333, 4.167, 5
    np.testing.assert_allclose(resample_linear(np.arange(6.0), plan), np.arange(7) / 1.2)
    np.testing.assert_array_equal(resample_nearest(np.arange(6), plan), [0, 1, 2, 3, 3, 4, 5])
    # original frame i -> resampled round(1.2 i) = 0, 1, 2, 4, 5, 6
    np.testing.assert_array_equal(plan.new_of_orig(), [0, 1, 2, 4, 5, 6])


@pytest.mark.parametrize("fps", [10.0, 24.36, 25.0, 29.97])
def test_upsampling_labels_round_trip_exactly(fps):
    rng = np.random.default_rng(int(fps))
    labels = rng.integers(0, 5, size=997).astype(np.int8)
    plan = make_plan(labels.size, fps, 30.0)
    back = to_original(resample_nearest(labels, plan), plan)
    np.testing.assert_array_equal(back, labels)


@pytest.mark.parametrize("fps", [45.0, 60.0, 60.01, 120.0])
def test_downsampling_keeps_sample_frames_and_maps_back(fps):
    n = 1001
    plan = make_plan(n, fps, 30.0)
    frames = np.arange(n)
    new = resample_nearest(frames, plan)  # which original frame each resampled frame took
    back = to_original(new, plan)
    assert back.shape == (n,)
    assert np.abs(back - frames).max() <= np.ceil(fps / 30.0 / 2)  # every frame maps to a nearby sample
    exact = np.isclose(plan.source_positions(), np.round(plan.source_positions()))
    np.testing.assert_array_equal(resample_linear(frames.astype(float), plan)[exact], new[exact])


def test_identity_plan():
    plan = make_plan(10, 30.0, None)
    assert plan.identity and plan.n_new == 10
    x = np.arange(10.0)
    np.testing.assert_array_equal(to_original(resample_linear(x, plan), plan), x)


# ------------------------------------------------------------------------------------------ pipeline units
def _tracking_moving(T=60, fps_px=1.0):
    parts = ["nose", "ear_left", "ear_right", "tail_base"]
    xy = np.zeros((T, 2, len(parts), 2), dtype=np.float32)
    base = {"nose": (40, 0), "ear_left": (30, 5), "ear_right": (30, -5), "tail_base": (0, 0)}
    for k, p in enumerate(parts):
        xy[:, 0, k] = np.array(base[p]) + np.stack([np.arange(T) * fps_px, np.zeros(T)], axis=1)
        xy[:, 1, k] = np.array(base[p]) + np.array([200.0, 100.0])
    return Tracking(xy, [1, 2], parts)


def _row(fps=30.0):
    return pd.Series(
        {
            "video_id": 5,
            "lab_id": "L",
            "frames_per_second": fps,
            "pix_per_cm_approx": 10.0,
            "behaviors_labeled": '["mouse1,mouse2,chase", "mouse1,self,rear"]',
        }
    )


def test_pipeline_speed_units_and_finite():
    s = FeatureSettings(target_fps=None)
    vf = video_features(_row(), _tracking_moving(), s)
    assert vf.pairs == [(1, 1), (1, 2)]
    col = s.feature_names().index("a_speed")
    # 1 px/frame, 30 fps, 10 px/cm = 3 cm/s, stored divided by the fixed scale 50 cm/s
    np.testing.assert_allclose(vf.x[1, :, col] * s.scales()[col], 3.0, rtol=1e-5)
    assert np.isfinite(vf.x).all() and np.abs(vf.x).max() <= s.clip
    assert vf.allowed[0, CLASS_OF["rear"]] and not vf.allowed[0, CLASS_OF["chase"]]
    assert vf.allowed[1, CLASS_OF["chase"]] and vf.allowed[:, 0].all()


def test_pipeline_resampled_labels_map_back_exactly():
    ann = pd.DataFrame(
        {
            "agent_id": [1, 1],
            "target_id": [2, 1],
            "action": ["chase", "rear"],
            "start_frame": [7, 20],
            "stop_frame": [19, 41],
        }
    )
    vf = video_features(_row(fps=25.0), _tracking_moving(T=50), FeatureSettings(target_fps=30.0), ann)
    assert vf.n_frames_orig == 50 and vf.n_frames == 60  # ceil(49 * 1.2) + 1
    back = vf.to_original(vf.labels, axis=1)
    np.testing.assert_array_equal(back, vf.to_original(vf.labels.T).T)
    expect_chase = np.zeros(50, dtype=np.int8)
    expect_chase[7:19] = CLASS_OF["chase"]
    np.testing.assert_array_equal(back[1], expect_chase)
    assert (back[0][20:41] == CLASS_OF["rear"]).all() and back[0].astype(bool).sum() == 21


def test_pipeline_motion_set_seed_layout():
    # agent slot 0, target slot 1; raw points by name: ear_left, ear_right, nose, tail_base, 14 zero slots
    tr = _tracking_moving()
    s = FeatureSettings(feature_set="motion", target_fps=None)
    vf = video_features(_row(), tr, s)
    names = s.feature_names()
    assert vf.x.shape == (2, 60, 288)
    pair12 = vf.pairs.index((1, 2))
    sp = names.index("m0_p02_speed")  # agent's nose: 1 px/frame -> 3 cm/s, scaled by 50
    np.testing.assert_allclose(vf.x[pair12, :, sp] * 50.0, 3.0, rtol=1e-5)
    assert (vf.x[pair12, :, names.index("m1_p02_speed")] == 0).all()  # target (mouse 2) is still
    np.testing.assert_allclose(vf.x[pair12, 0, names.index("m1_p02_x")] * 50.0, 24.0, rtol=1e-6)  # 240 px
    assert (vf.x[:, :, names.index("m0_p10_x")] == 0).all()  # padded point slot
    assert (vf.x[:, :, names.index("m2_p00_x")] == 0).all()  # absent third mouse
    s = FeatureSettings(feature_set="motion", target_fps=None, motion_points="canonical")
    vf = video_features(_row(), tr, s)
    assert vf.x.shape == (2, 60, s.num_features) and np.isfinite(vf.x).all()
    assert (vf.x[vf.pairs.index((1, 1)), :, s.feature_names().index("is_self")] == 1).all()


def test_feature_settings_round_trip_and_validation():
    s = FeatureSettings(feature_set="motion", target_fps=None, max_gap_s=0.1)
    assert FeatureSettings.from_dict(s.to_dict()) == s
    assert s.num_features == 288 == len(s.feature_names())  # the seed's 4 mice x 18 points layout
    s = FeatureSettings(feature_set="motion", motion_points="canonical")
    assert s.num_features == 4 * C * 4 + 4 + 1 == len(s.feature_names())
    scales = dict(zip(FeatureSettings().feature_names(), FeatureSettings().scales()))
    assert scales["dist_rate"] == 50 and scales["dist_nose__nose"] == 10 and scales["a_speed"] == 50
    assert FeatureSettings().num_features == len(motion.pair_feature_names())
    with pytest.raises(ValueError):
        FeatureSettings(feature_set="pca")
    with pytest.raises(ValueError):
        FeatureSettings(target_fps=0)
    assert INDEX["nose"] == 0
