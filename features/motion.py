"""Pure-numpy motion and pair features. Arrays in, new arrays out: no pandas, no in-place changes of inputs.

Units: positions in cm (pixels / pix_per_cm_approx), speeds in cm/s, accelerations in cm/s², angles in
degrees wrapped to (-180, 180]. Derivatives are backward differences scaled by fps (v[t] = (p[t] - p[t-1])
* fps), with frame 0 copying frame 1 so that a constant motion has a constant speed from the first frame.

Two feature sets:
- `motion_features` (the seed's set, docs/history.md): for every tracked point its x, y, speed and
  acceleration: M mice x K points -> 2MK + MK + MK values (4 x 18 -> 144 + 72 + 72 = 288).
- `pair_features` (default): agent-centred, rotation-invariant features of one (agent, target) pair over
  the canonical skeleton (features.skeleton.CANONICAL); names in `pair_feature_names()`.
- `pair_rich_features` (opt-in, `feature_set="pair_rich"`): the pair set plus all 9 x 9 agent-target point
  distances (`xdist_<agent point>__<target point>`; for a self pair these are the within-mouse distances),
  the agent's points in the TARGET's body frame (`tf_<point>_x/_y`) and the 36 within-agent distances
  (`adist_<p>__<q>`, posture); names in `pair_rich_feature_names()`. All are invariant under rotation and
  translation; under a left/right mirror `_left`/`_right` names swap and `_y` coordinates change sign
  (what `ensemble.infer.flip_permutation` derives from the names). No distance to the arena wall: the
  metadata gives the arena's size in cm but not where it lies in the image, and an arena placed from the
  tracked points' extent would not be rotation invariant.
"""

from __future__ import annotations

import numpy as np

from features.skeleton import CANONICAL, INDEX

NOSE, NECK, CENTER, TAIL = INDEX["nose"], INDEX["neck"], INDEX["body_center"], INDEX["tail_base"]


# ------------------------------------------------------------------------------------------ primitives
def wrap_deg(a: np.ndarray) -> np.ndarray:
    """Wrap angles in degrees to (-180, 180]."""
    a = np.asarray(a, dtype=np.float64)
    w = np.mod(a + 180.0, 360.0) - 180.0  # [-180, 180)
    return np.where(w == -180.0, 180.0, w)


def diff_time(a: np.ndarray, fps: float) -> np.ndarray:
    """Backward difference along axis 0 times fps; frame 0 copies frame 1 (0 for a single frame)."""
    a = np.asarray(a, dtype=np.float64)
    d = np.zeros_like(a)
    if a.shape[0] > 1:
        d[1:] = (a[1:] - a[:-1]) * fps
        d[0] = d[1]
    return d


def velocity(p: np.ndarray, fps: float) -> np.ndarray:
    """[T, ..., 2] positions -> [T, ..., 2] velocity per second."""
    return diff_time(p, fps)


def speed(p: np.ndarray, fps: float) -> np.ndarray:
    """[T, ..., 2] positions -> [T, ...] speed (norm of the velocity)."""
    return np.linalg.norm(velocity(p, fps), axis=-1)


def acceleration(p: np.ndarray, fps: float) -> np.ndarray:
    """[T, ..., 2] positions -> [T, ...] signed change of speed per second (tangential acceleration)."""
    return diff_time(speed(p, fps), fps)


def heading_deg(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Direction of the body axis tail -> head in degrees, (-180, 180], 0 = +x, 90 = +y."""
    d = np.asarray(head, dtype=np.float64) - np.asarray(tail, dtype=np.float64)
    return wrap_deg(np.degrees(np.arctan2(d[..., 1], d[..., 0])))


def turn_rate(heading: np.ndarray, fps: float) -> np.ndarray:
    """Heading [T] in degrees -> angular velocity in deg/s, wrapped per step (179 -> -179 is +2 deg)."""
    h = np.asarray(heading, dtype=np.float64)
    d = np.zeros_like(h)
    if h.shape[0] > 1:
        d[1:] = wrap_deg(h[1:] - h[:-1]) * fps
        d[0] = d[1]
    return d


def to_body_frame(points: np.ndarray, origin: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Points [T, K, 2] in the frame centred on origin [T, 2] with its x axis along heading [T] (deg)."""
    th = np.radians(np.asarray(heading, dtype=np.float64))
    c, s = np.cos(th)[:, None], np.sin(th)[:, None]
    d = np.asarray(points, dtype=np.float64) - np.asarray(origin, dtype=np.float64)[:, None, :]
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def rotate_vec(v: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Rotate vectors [T, 2] into the frame whose x axis is heading [T] (deg)."""
    return to_body_frame(np.asarray(v)[:, None, :], np.zeros((len(v), 2)), heading)[:, 0, :]


# ------------------------------------------------------------------------------------------ seed set
def motion_features(xy: np.ndarray, fps: float) -> np.ndarray:
    """The seed's motion set: [T, M, K, 2] -> [T, 2MK + MK + MK] = coordinates, speeds, accelerations.

    Layout: all M*K (x, y) pairs in (mouse, point) order, then M*K speeds, then M*K accelerations.
    """
    xy = np.asarray(xy, dtype=np.float64)
    T, M, K, _ = xy.shape
    coords = xy.reshape(T, M * K * 2)
    sp = speed(xy, fps).reshape(T, M * K)
    ac = acceleration(xy, fps).reshape(T, M * K)
    return np.concatenate([coords, sp, ac], axis=1)


def motion_feature_names(n_mice: int, points=CANONICAL) -> list[str]:
    names = [f"m{m}_{p}_{ax}" for m in range(n_mice) for p in points for ax in ("x", "y")]
    names += [f"m{m}_{p}_speed" for m in range(n_mice) for p in points]
    names += [f"m{m}_{p}_accel" for m in range(n_mice) for p in points]
    return names


# ------------------------------------------------------------------------------------------ pair set
# Distances between key points (agent point, target point).
DISTANCES: tuple[tuple[str, str], ...] = (
    ("nose", "nose"),
    ("nose", "tail_base"),
    ("tail_base", "nose"),
    ("body_center", "body_center"),
    ("nose", "body_center"),
    ("body_center", "nose"),
    ("nose", "neck"),
    ("tail_base", "tail_base"),
)


def pair_feature_names() -> list[str]:
    """Names (with units) of the columns `pair_features` returns, in order."""
    names = [f"a_{p}_{ax}" for p in CANONICAL for ax in ("x", "y")]  # cm, agent frame
    names += [f"t_{p}_{ax}" for p in CANONICAL for ax in ("x", "y")]  # cm, agent frame
    names += [f"dist_{a}__{t}" for a, t in DISTANCES]  # cm
    names += ["rel_vel_x", "rel_vel_y", "dist_rate"]  # cm/s (target vs agent, agent frame)
    names += ["heading_diff", "heading_diff_sin", "heading_diff_cos"]  # deg, 1, 1
    names += ["a_turn_rate", "t_turn_rate"]  # deg/s
    names += ["a_speed", "t_speed", "a_nose_speed", "t_nose_speed"]  # cm/s
    names += ["a_accel", "t_accel"]  # cm/s^2
    names += ["a_body_len", "t_body_len"]  # cm
    names += [f"a_{p}_missing" for p in CANONICAL] + [f"t_{p}_missing" for p in CANONICAL]  # 0/1
    names += ["is_self"]  # 0/1
    return names


def pair_features(
    agent: np.ndarray,
    target: np.ndarray,
    fps: float,
    *,
    agent_missing: np.ndarray | None = None,
    target_missing: np.ndarray | None = None,
    is_self: bool = False,
) -> np.ndarray:
    """Rotation- and translation-invariant features of agent [T, C, 2] towards target [T, C, 2] (cm).

    The agent's body frame: origin body_center, x axis tail_base -> nose (the body axis). For a self pair pass
    the agent as target too (same layout, is_self = 1). Returns float64 [T, len(pair_feature_names())].
    """
    a = np.asarray(agent, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    T = a.shape[0]
    h_a = heading_deg(a[:, TAIL], a[:, NOSE])
    h_t = heading_deg(t[:, TAIL], t[:, NOSE])
    origin = a[:, CENTER]
    a_loc = to_body_frame(a, origin, h_a).reshape(T, -1)
    t_loc = to_body_frame(t, origin, h_a).reshape(T, -1)
    dists = np.stack([np.linalg.norm(a[:, INDEX[p]] - t[:, INDEX[q]], axis=-1) for p, q in DISTANCES], axis=1)
    v_a, v_t = velocity(a[:, CENTER], fps), velocity(t[:, CENTER], fps)
    rel = rotate_vec(v_t - v_a, h_a)
    dist_rate = diff_time(np.linalg.norm(t[:, CENTER] - a[:, CENTER], axis=-1), fps)
    hd = wrap_deg(h_t - h_a)
    hd_rad = np.radians(hd)
    body_a = np.linalg.norm(a[:, NOSE] - a[:, TAIL], axis=-1)
    body_t = np.linalg.norm(t[:, NOSE] - t[:, TAIL], axis=-1)
    am = np.zeros((T, a.shape[1])) if agent_missing is None else np.asarray(agent_missing, dtype=np.float64)
    tm = np.zeros((T, t.shape[1])) if target_missing is None else np.asarray(target_missing, dtype=np.float64)
    cols = [
        a_loc,
        t_loc,
        dists,
        rel,
        dist_rate[:, None],
        hd[:, None],
        np.sin(hd_rad)[:, None],
        np.cos(hd_rad)[:, None],
        turn_rate(h_a, fps)[:, None],
        turn_rate(h_t, fps)[:, None],
        np.linalg.norm(v_a, axis=-1)[:, None],
        np.linalg.norm(v_t, axis=-1)[:, None],
        speed(a[:, NOSE], fps)[:, None],
        speed(t[:, NOSE], fps)[:, None],
        acceleration(a[:, CENTER], fps)[:, None],
        acceleration(t[:, CENTER], fps)[:, None],
        body_a[:, None],
        body_t[:, None],
        am,
        tm,
        np.full((T, 1), float(is_self)),
    ]
    return np.concatenate(cols, axis=1)


# ------------------------------------------------------------------------------------------ rich pair set
AGENT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (p, q) for i, p in enumerate(CANONICAL) for q in CANONICAL[i + 1:]
)  # the 36 unordered point pairs of one mouse, in CANONICAL order


def pair_rich_feature_names() -> list[str]:
    """Names of `pair_rich_features`: the pair set, then 81 + 18 + 36 columns (cm)."""
    names = pair_feature_names()
    names += [f"xdist_{p}__{q}" for p in CANONICAL for q in CANONICAL]  # agent point -> target point
    names += [f"tf_{p}_{ax}" for p in CANONICAL for ax in ("x", "y")]  # agent in the target's body frame
    names += [f"adist_{p}__{q}" for p, q in AGENT_PAIRS]  # within the agent
    return names


def pair_rich_features(agent: np.ndarray, target: np.ndarray, fps: float, **kw) -> np.ndarray:
    """`pair_features` (same arguments) plus the rich columns; float64 [T, len(pair_rich_feature_names())]."""
    a = np.asarray(agent, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    T, K = a.shape[0], a.shape[1]
    base = pair_features(a, t, fps, **kw)
    cross = np.linalg.norm(a[:, :, None, :] - t[:, None, :, :], axis=-1).reshape(T, K * K)
    h_t = heading_deg(t[:, TAIL], t[:, NOSE])
    in_target = to_body_frame(a, t[:, CENTER], h_t).reshape(T, -1)
    i, j = np.array([(INDEX[p], INDEX[q]) for p, q in AGENT_PAIRS]).T
    within = np.linalg.norm(a[:, i] - a[:, j], axis=-1)
    return np.concatenate([base, cross, in_target, within], axis=1)
