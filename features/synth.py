"""Synthetic twin of the Kaggle MABe 2025 dataset, in its exact file layout.

There is no Kaggle tracking data offline, so everything downstream (feature cache, training, search,
ensemble, export, predict) runs on what this module writes:

    <out>/train.csv, <out>/test.csv                      38 columns, real column order and dtypes
    <out>/train_tracking/<lab>/<video>.parquet           video_frame, mouse_id, bodypart, x, y (long format)
    <out>/train_annotation/<lab>/<video>.parquet         agent_id, target_id, action, start_frame, stop_frame
    <out>/test_tracking/<lab>/<video>.parquet
    <out>/sample_submission.csv                          official submission format
    <out>/test_solution.csv                              (not Kaggle) ground truth of the test videos in the
                                                         official metric's solution format

Metadata rows are copies of REAL annotated rows of train.csv (lab, fps, body parts, mice, whitelist incl.
the malformed single-quoted entries, pix_per_cm, arena, strains) with fresh video ids and a duration that
matches the generated frames. Mice are simulated in cm and seconds (steered random walk inside the arena
walls, a heading, a posture), body parts are placed from a per-mouse body model and written in pixels.
Behaviours are PLANTED FROM THE POSE: the simulation plays scenes (approach, sniff the target's head/face/
body/tail base, chase, attack, mount, rear, groom, ...) and labels exactly the frames where the pose shows
them (e.g. `sniff` only once the agent's nose has reached the target's head), then adds annotator noise
(boundary jitter, a few missed short events, rare overlaps of two actions for one pair). Tracking noise:
point jitter, missing points, missing runs, a mouse hiding, whole missing frames (missing = missing rows,
never NaN), a few coordinates just outside the image and rare tracker identity swaps. Lab quirks kept:
malformed whitelist strings, AdaptableSnail's mostly-missing `neck`, BoisterousParrot's 15-frame steps.
Same seed -> byte-identical files (also across processes). `synth.json` (written last) marks the folder as
synthetic: regenerating replaces our files only there, and a folder with Kaggle files but no marker
(real data?) is refused.

Learnability (default dataset, 5-fold by video): a 2-layer MLP on the pair features + window means scores
~0.68 on the official metric, guessing ~0.07, so models have something real to learn.

    python -m features.synth --out data/synth                                  # defaults (20 + 5 videos)
    python -m features.synth --out data/synth-small --videos 6 --frames 1200 --test-videos 2
    python -m features.synth --out data/synth-lh --labs LyricalHare,GroovyShrew --seed 3
    python -m features.build --data data/synth --out data/synth/cache          # next step
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import MabeDataError, cli_guard
from features.labels import ACTIONS, SELF_ACTIONS

DEFAULT_LABS: tuple[str, ...] = (
    "AdaptableSnail",     # 3-4 mice, 10 or 18 body parts (headpiece), 25/30 fps, self rear + 6 pair actions
    "CautiousGiraffe",    # 25 fps, MARS 7-part set, approach/chase/escape and four sniff variants
    "DeliriousFly",       # 60 fps, 8 parts with tail_tip, malformed quoted whitelist entries
    "ReflectiveManatee",  # 25 fps, lateral_* parts, malformed entries (attack only quoted in 3 real videos)
    "TranquilPanther",    # 30 fps, self rear/selfgroom + mount/intromit/sniff/sniffgenital
)
DEFAULT_VIDEOS = 20
DEFAULT_FRAMES = 3000
DEFAULT_TEST_VIDEOS = 5  # one per default lab, so predict/export see every lab

_META_GZ = Path(__file__).parent / "data" / "train_meta.csv.gz"

# ---------------------------------------------------------------------------------------------- body model
# Front points are placed relative to the neck pivot (rotated by heading + head yaw, scaled by the posture's
# elongation e); back points relative to the body centre; tail points along the tail. cm, x forward, y left.
_NECK_DIST = 2.2
_FRONT: dict[str, tuple[float, float]] = {
    "nose": (2.0, 0.0), "head": (1.2, 0.0), "ear_left": (0.4, 0.9), "ear_right": (0.4, -0.9),
    "neck": (0.0, 0.0),
    **{f"headpiece_{tb}{fb}{lr}": (fx + (0.15 if tb == "top" else 0.0), (0.4 if tb == "top" else 0.55) * sy)
       for tb in ("top", "bottom") for fb, fx in (("front", 1.0), ("back", 0.3))
       for lr, sy in (("left", 1.0), ("right", -1.0))},
}
_BACK: dict[str, tuple[float, float]] = {
    "body_center": (0.0, 0.0), "spine_1": (1.1, 0.0), "spine_2": (-1.1, 0.0),
    "lateral_left": (0.0, 1.3), "lateral_right": (0.0, -1.3),
    "hip_left": (-1.7, 1.1), "hip_right": (-1.7, -1.1),
    "tail_base": (-3.6, 0.0), "forepaw_left": (1.6, 0.9), "forepaw_right": (1.6, -0.9),
    "hindpaw_left": (-2.2, 1.2), "hindpaw_right": (-2.2, -1.2),
}
_TAIL: dict[str, float] = {"tail_middle_1": 2.5, "tail_midpoint": 4.0, "tail_middle_2": 5.3, "tail_tip": 8.0}
_NOSE_REACH = _NECK_DIST + _FRONT["nose"][0]  # 4.2 cm centre -> nose at e = 1
_TAIL_BASE = 3.6

# ---------------------------------------------------------------------------------------------- behaviours
@dataclass(frozen=True)
class Motif:
    """How one action is played and what makes it look different from its neighbours.

    family: scene script (see `_scene_phases`); hold: duration range (s) of the labelled phase; e: body
    elongation (1 normal, 0.45 = reared, nose near centre); phi: head yaw (rad); speed: cm/s; point: where the
    agent's nose goes on the target (nose/neck/body/flank/tail/back); nose_amp/nose_freq: rhythmic nose motion
    (grooming, digging); thrust: rhythmic body movement along the heading (intromission); jitter: erratic
    motion (cm/sqrt(s)); gap: pursuit distance nose -> target tail base (cm); mount: (behind cm, lateral cm,
    angle rad) of the agent's centre on the target; weight: how often it is chosen.
    """

    family: str
    hold: tuple[float, float]
    e: float = 1.0
    phi: float = 0.0
    speed: float = 0.0
    point: str = "neck"
    nose_amp: float = 0.0
    nose_freq: float = 0.0
    thrust: float = 0.0
    jitter: float = 0.0
    gap: float = 3.0
    mount: tuple[float, float, float] = (1.8, 0.0, 0.0)
    weight: float = 1.0


MOTIFS: dict[str, Motif] = {
    # self
    "rear": Motif("still", (1.0, 3.0), e=0.45, nose_amp=0.15, nose_freq=1.5),
    "selfgroom": Motif("still", (2.0, 5.0), e=0.7, phi=1.9, nose_amp=0.35, nose_freq=6.0),
    "genitalgroom": Motif("still", (2.0, 4.0), e=0.6, phi=2.7, nose_amp=0.3, nose_freq=4.0),
    "rest": Motif("still", (4.0, 9.0), e=0.85, phi=0.3),
    "freeze": Motif("still", (1.0, 3.0), e=1.1),
    "huddle": Motif("huddle", (4.0, 9.0), e=0.85, point="body"),
    "dig": Motif("move", (2.0, 4.0), e=0.85, speed=1.5, nose_amp=0.4, nose_freq=8.0),
    "run": Motif("move", (0.7, 2.0), e=1.1, speed=28.0),
    "climb": Motif("climb", (1.0, 3.0), e=0.55),
    "exploreobject": Motif("object", (1.0, 4.0), speed=2.0, nose_amp=0.3, nose_freq=2.0),
    "biteobject": Motif("object", (0.5, 2.0), e=0.9, nose_amp=0.2, nose_freq=8.0),
    # pair: nose contact at a point of the target
    "sniff": Motif("contact", (1.0, 3.0), point="neck", weight=2.0),
    "sniffface": Motif("contact", (0.7, 2.0), point="nose"),
    "sniffbody": Motif("contact", (1.0, 2.5), point="flank"),
    "sniffgenital": Motif("contact", (1.0, 3.0), point="tail"),
    "reciprocalsniff": Motif("mutual", (1.0, 2.0), point="nose"),
    "allogroom": Motif("contact", (3.0, 6.0), point="back", nose_amp=0.3, nose_freq=6.0),
    "dominancegroom": Motif("contact", (2.0, 4.0), e=0.7, point="neck", nose_amp=0.3, nose_freq=6.0),
    # pair: closing in / moving along
    "approach": Motif("approach", (0.0, 0.0), speed=12.0),
    "chase": Motif("pursuit", (1.0, 3.0), speed=26.0, gap=2.5),
    "follow": Motif("pursuit", (2.0, 5.0), speed=10.0, gap=5.0),
    "shepherd": Motif("pursuit", (2.0, 5.0), speed=8.0, gap=8.0),
    "chaseattack": Motif("pursuit", (1.5, 3.0), speed=24.0, gap=0.5, jitter=3.0),
    "disengage": Motif("disengage", (0.7, 1.5), speed=12.0),
    # pair: fights
    "attack": Motif("fight", (0.5, 2.0), point="body", jitter=4.0, speed=20.0),
    "tussle": Motif("fight", (0.5, 1.5), point="body", jitter=5.0, speed=20.0),
    "dominance": Motif("mount", (1.0, 3.0), mount=(0.0, 2.5, 1.57)),
    # pair: on top of the target
    "mount": Motif("mount", (3.0, 7.0), e=0.9, mount=(1.8, 0.0, 0.0)),
    "intromit": Motif("mount", (2.0, 5.0), e=0.9, thrust=0.6, mount=(1.5, 0.0, 0.0)),
    "attemptmount": Motif("mount", (0.5, 1.5), mount=(3.2, 0.8, 0.35), jitter=1.5),
    "dominancemount": Motif("mount", (1.0, 3.0), mount=(1.0, 0.0, 0.8)),
    "ejaculate": Motif("mount", (3.0, 6.0), e=0.8, mount=(1.5, 0.0, 0.0), weight=0.1),
    # pair: reactions (the agent is the one approached or attacked)
    "escape": Motif("react", (1.0, 2.5), speed=25.0),
    "avoid": Motif("react", (1.0, 2.5), speed=10.0),
    "flinch": Motif("react", (0.2, 0.5), speed=30.0),
    "defend": Motif("react", (0.5, 2.0), e=0.6),
    "submit": Motif("react", (1.0, 3.0), e=0.75, phi=0.6),
}
assert set(MOTIFS) == set(ACTIONS), sorted(set(ACTIONS) ^ set(MOTIFS))


# ---------------------------------------------------------------------------------------------- metadata
def real_metadata() -> pd.DataFrame:
    """The packaged real train.csv (8,789 rows x 38 columns), read with plain pandas."""
    return pd.read_csv(_META_GZ)


def _normalise_whitelist(raw) -> list[tuple[int, int, str]]:
    """behaviors_labeled JSON -> [(agent, target, action)] with quotes stripped (target == agent for self)."""
    if not isinstance(raw, str) or not raw.strip():
        return []
    out: dict[tuple[int, int, str], None] = {}
    for entry in json.loads(raw):
        a, t, act = entry.replace("'", "").replace(" ", "").split(",")
        agent = int(a.removeprefix("mouse"))
        target = agent if t == "self" else int(t.removeprefix("mouse"))
        out[(agent, target, act)] = None
    return list(out)


def _n_mice(row: pd.Series, whitelist) -> int:
    present = [m for m in range(1, 5)
               if pd.notna(row[f"mouse{m}_strain"]) or pd.notna(row[f"mouse{m}_color"])]
    named = [m for a, t, _ in whitelist for m in (a, t)]
    return max(present + named + [2])


def annotated_labs(meta: pd.DataFrame | None = None, public: bool = False) -> list[str]:
    """Labs with at least one annotated video: the 15 'adjective-animal' labs (those of the hidden test), plus
    the public sets CalMS21_* and CRIM13 with `public=True`."""
    meta = real_metadata() if meta is None else meta
    labs = meta.loc[meta["behaviors_labeled"].notna(), "lab_id"].unique()
    return sorted(lab for lab in labs if public or re.fullmatch(r"[A-Z][a-z]+[A-Z][a-z]+", lab))


# ---------------------------------------------------------------------------------------------- arena
@dataclass
class Arena:
    """Arena in cm ([0, w] x [0, h]; circular = inscribed circle) and its placement in the image (px)."""

    w: float
    h: float
    circular: bool
    ppcm: float
    off_x: float
    off_y: float
    img_w: int
    img_h: int

    @classmethod
    def from_row(cls, row: pd.Series) -> "Arena":
        ppcm = float(row["pix_per_cm_approx"])
        img_w, img_h = int(row["video_width_pix"]), int(row["video_height_pix"])
        # keep the arena inside the image (some real rows list an arena a little larger than the frame)
        w = min(float(row["arena_width_cm"]), 0.97 * img_w / ppcm)
        h = min(float(row["arena_height_cm"]), 0.97 * img_h / ppcm)
        return cls(w=w, h=h, circular=str(row["arena_shape"]) == "circular", ppcm=ppcm,
                   off_x=(img_w - w * ppcm) / 2, off_y=(img_h - h * ppcm) / 2, img_w=img_w, img_h=img_h)

    def inward(self, x: float, y: float) -> tuple[float, float, float]:
        """(distance to the nearest wall, inward unit normal x, y) of a point."""
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2
            dx, dy = cx - x, cy - y
            d = math.hypot(dx, dy) or 1e-6
            return r - d, dx / d, dy / d
        cands = ((x, 1.0, 0.0), (self.w - x, -1.0, 0.0), (y, 0.0, 1.0), (self.h - y, 0.0, -1.0))
        return min(cands)

    def clamp(self, x: float, y: float, margin: float) -> tuple[float, float]:
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2 - margin
            dx, dy = x - cx, y - cy
            d = math.hypot(dx, dy)
            if d > r:
                return cx + dx * r / d, cy + dy * r / d
            return x, y
        return min(max(x, margin), self.w - margin), min(max(y, margin), self.h - margin)


    def clamp_points(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body points stay inside the walls (a tail along the wall, not through it)."""
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2
            dx, dy = px - cx, py - cy
            d = np.maximum(np.hypot(dx, dy), 1e-9)
            f = np.minimum(1.0, r / d)
            return cx + dx * f, cy + dy * f
        return np.clip(px, 0.0, self.w), np.clip(py, 0.0, self.h)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


# ---------------------------------------------------------------------------------------------- scenes
@dataclass
class Role:
    """What one mouse does during one phase of a scene."""

    mode: str                     # roam still move goto lock pursue flee fight face
    other: int | None = None      # partner mouse index (0-based)
    point: str = "neck"           # goto: nose to this point of the partner (or 'object', 'wall')
    speed: float = 0.0
    e: float = 1.0
    phi: float = 0.0
    nose_amp: float = 0.0
    nose_freq: float = 0.0
    thrust: float = 0.0
    jitter: float = 0.0
    gap: float = 0.0
    mount: tuple[float, float, float] = (1.8, 0.0, 0.0)
    side: float = 1.0             # which flank for point 'body'


@dataclass
class Phase:
    roles: dict[int, Role]                   # mouse index -> role (mice not named roam)
    frames: int                              # duration (or timeout when until_contact)
    labels: list[tuple[int, int, str]]       # (agent index, target index, action) labelled over the phase
    # (mouse, other, point, distance, side): the phase ends early once the mouse's nose is that close to the
    # point of the other mouse (the same point and flank its role steers to);
    # a phase with `until` that times out aborts the scene (the pose never showed the behaviour)
    until: tuple[int, int, str, float, float] | None = None
    min_frames: int = 0                      # labels of a shorter phase are not recorded


@dataclass
class Scene:
    start: int
    phases: list[Phase]
    mice: tuple[int, ...]
    idx: int = 0
    t_phase: int = 0
    done: bool = False
    start_dist: float = 0.0


@dataclass
class _Ctx:
    """Per-video constants the scene builder needs."""

    fps: float
    n_mice: int
    whitelist: set[tuple[int, int, str]]  # 0-based (agent, target, action)
    rng: np.random.Generator


def _frames(ctx: _Ctx, lo: float, hi: float) -> int:
    return max(2, int(round(ctx.rng.uniform(lo, hi) * ctx.fps)))


def _maybe(ctx: _Ctx, a: int, t: int, action: str) -> list[tuple[int, int, str]]:
    return [(a, t, action)] if (a, t, action) in ctx.whitelist else []


def _scene_phases(ctx: _Ctx, a: int, t: int, action: str) -> list[Phase]:
    """The script of one scene planting `action` for agent a (-> target t; t == a for self actions)."""
    m = MOTIFS[action]
    fr = lambda lo, hi: _frames(ctx, lo, hi)  # noqa: E731
    timeout = int(5 * ctx.fps)
    posture = dict(e=m.e, phi=m.phi * (1 if ctx.rng.random() < 0.5 else -1), nose_amp=m.nose_amp,
                   nose_freq=m.nose_freq)
    if m.family == "still":
        return [Phase({a: Role("still", **posture)}, fr(*m.hold), [(a, a, action)])]
    if m.family == "move":
        return [Phase({a: Role("move", speed=m.speed, **posture)}, fr(*m.hold), [(a, a, action)])]
    if m.family == "climb":
        return [Phase({a: Role("goto", point="wall", speed=12.0)}, timeout, [],
                      until=(a, -1, "wall", 1.0, 1.0)),
                Phase({a: Role("goto", point="wall", speed=1.0, **posture)}, fr(*m.hold), [(a, a, action)])]
    if m.family == "object":
        return [Phase({a: Role("goto", point="object", speed=12.0)}, timeout, [],
                      until=(a, -1, "object", 1.2, 1.0)),
                Phase({a: Role("goto", point="object", speed=m.speed or 1.0, **posture)}, fr(*m.hold),
                      [(a, a, action)])]
    # pair scenes need a partner; huddle (self) picks one
    if m.family == "huddle":
        others = [o for o in range(ctx.n_mice) if o != a]
        o = others[int(ctx.rng.integers(len(others)))]
        return [Phase({a: Role("goto", other=o, point="body", speed=10.0)}, timeout, [],
                      until=(a, o, "body", 1.5, 1.0)),
                Phase({a: Role("goto", other=o, point="body", speed=0.5, **posture),
                       o: Role("still", e=0.85)}, fr(*m.hold), [(a, a, action)])]
    side = 1.0 if ctx.rng.random() < 0.5 else -1.0
    # phase 1 of a pair scene: the agent's nose goes to the target (labelled `approach` where whitelisted
    # and the distance really closed); the scene is aborted if it never gets there
    if m.family in ("contact", "fight", "mutual"):
        go_point = m.point
    else:
        go_point = "tail" if m.family in ("mount", "pursuit") else "body"
    go_reach = {"pursuit": m.gap + 1.5, "approach": 3.0}.get(m.family, 1.2)
    go = Phase({a: Role("goto", other=t, point=go_point, speed=14.0, side=side), t: Role("roam", speed=3.0)},
               timeout, _maybe(ctx, a, t, "approach"), min_frames=int(0.5 * ctx.fps),
               until=(a, t, go_point, go_reach, side))
    if m.family == "contact":
        hold = Phase({a: Role("goto", other=t, point=m.point, speed=5.0, side=side, **posture),
                      t: Role("roam", speed=1.5)}, fr(*m.hold), [(a, t, action)])
        phases = [go, hold]
        if ctx.rng.random() < 0.5 and (a, t, "disengage") in ctx.whitelist:
            phases.append(Phase({a: Role("flee", other=t, speed=12.0)}, fr(0.7, 1.5), [(a, t, "disengage")]))
        return phases
    if m.family == "mutual":
        hold = Phase({a: Role("goto", other=t, point="nose", speed=4.0),
                      t: Role("goto", other=a, point="nose", speed=4.0)}, fr(*m.hold),
                     [(a, t, action)] + _maybe(ctx, t, a, action))
        return [go, hold]
    if m.family == "approach":
        go.labels = [(a, t, "approach")]
        phases = [go]
        reactions = [r for r in ("avoid", "escape") if (t, a, r) in ctx.whitelist]
        if reactions and ctx.rng.random() < 0.6:
            r = reactions[int(ctx.rng.integers(len(reactions)))]
            phases.append(Phase({t: Role("flee", other=a, speed=MOTIFS[r].speed), a: Role("still")},
                                fr(*MOTIFS[r].hold), [(t, a, r)]))
        return phases
    if m.family == "pursuit":
        lead = MOTIFS[action].speed
        labels = [(a, t, action)]
        if action in ("chase", "chaseattack"):
            labels += _maybe(ctx, t, a, "escape")
        hold = Phase({a: Role("pursue", other=t, speed=lead * 1.4, gap=m.gap, jitter=m.jitter),
                      t: Role("flee", other=a, speed=lead, jitter=m.jitter * 0.5)}, fr(*m.hold), labels)
        return [go, hold]
    if m.family == "fight":
        reactions = [r for r in ("defend", "submit") if (t, a, r) in ctx.whitelist]
        r = reactions[int(ctx.rng.integers(len(reactions)))] if reactions and ctx.rng.random() < 0.5 else None
        return [go] + _fight(ctx, a, t, action, r, side)
    if m.family == "mount":
        hold = Phase({a: Role("lock", other=t, e=m.e, thrust=m.thrust, jitter=m.jitter, mount=m.mount),
                      t: Role("still", e=0.95)}, fr(*m.hold), [(a, t, action)])
        return [go, hold]
    if m.family == "disengage":
        hold = Phase({a: Role("goto", other=t, point="neck", speed=5.0), t: Role("roam", speed=1.5)},
                     fr(1.0, 2.0), _maybe(ctx, a, t, "sniff"))
        return [go, hold, Phase({a: Role("flee", other=t, speed=m.speed)}, fr(*m.hold), [(a, t, action)])]
    if m.family == "react":
        # the target initiates: approaches (escape/avoid/flinch) or attacks (defend/submit); a reacts
        init = Phase({t: Role("goto", other=a, point="body", speed=14.0, side=side),
                      a: Role("roam", speed=2.0)},
                     timeout, _maybe(ctx, t, a, "approach"), min_frames=int(0.5 * ctx.fps),
                     until=(t, a, "body", 2.5 if action in ("escape", "avoid", "flinch") else 1.2, side))
        if action in ("escape", "avoid", "flinch"):
            chase = action == "escape" and (t, a, "chase") in ctx.whitelist and ctx.rng.random() < 0.5
            roles = {a: Role("flee", other=t, speed=m.speed)}
            labels = [(a, t, action)]
            if chase:
                roles[t] = Role("pursue", other=a, speed=m.speed * 1.3, gap=2.5)
                labels.append((t, a, "chase"))
            else:
                roles[t] = Role("still")
            return [init, Phase(roles, fr(*m.hold), labels)]
        return [init] + _fight(ctx, t, a, "attack", action, side)
    raise AssertionError(f"no script for family {m.family}")


def _fight(ctx: _Ctx, a: int, t: int, action: str, reaction: str | None, side: float) -> list[Phase]:
    """Attack-like contact of a on t; t may react (defend = faces a upright, submit = crouches still)."""
    m = MOTIFS[action]
    roles = {a: Role("fight", other=t, point="body", speed=m.speed, jitter=m.jitter, side=side)}
    labels = _maybe(ctx, a, t, action) if action == "attack" else [(a, t, action)]
    if action == "tussle":
        roles[t] = Role("fight", other=a, point="body", speed=m.speed, jitter=m.jitter, side=-side)
    elif reaction == "defend":
        roles[t] = Role("face", other=a, e=MOTIFS["defend"].e, jitter=1.0)
    elif reaction == "submit":
        roles[t] = Role("still", e=MOTIFS["submit"].e, phi=MOTIFS["submit"].phi)
    else:
        roles[t] = Role("roam", speed=4.0, jitter=2.0)
    if reaction is not None:
        labels = labels + [(t, a, reaction)]
    return [Phase(roles, _frames(ctx, *m.hold), labels)]


# ---------------------------------------------------------------------------------------------- simulation
@dataclass
class _Sim:
    """Trajectories of one video in cm: state per frame and mouse, plus planted labels (0-based mice)."""

    center: np.ndarray      # float64 [T, M, 2]
    heading: np.ndarray     # [T, M] rad
    e: np.ndarray           # [T, M] elongation
    phi: np.ndarray         # [T, M] head yaw
    tail: np.ndarray        # [T, M] tail angle
    nose_amp: np.ndarray    # [T, M] cm
    nose_freq: np.ndarray   # [T, M] Hz
    thrust: np.ndarray      # [T, M] cm
    scale: np.ndarray       # [M]
    events: list[tuple[int, int, str, int, int]] = field(default_factory=list)  # agent, target, action, s, e
    scenes: int = 0         # scenes started
    aborted: int = 0        # ... of which the pose never reached the contact (nothing labelled from there on)


def _choose_triple(ctx: _Ctx, free: set[int]):
    """A whitelisted (agent, target, action) drawn by motif weight; None when its mice are not free (drawing
    first and checking after keeps the action mix independent of how many mice happen to be free)."""
    if not ctx.whitelist:
        return None
    cands = sorted(ctx.whitelist)
    w = np.array([MOTIFS[act].weight for _, _, act in cands])
    a, t, act = cands[int(ctx.rng.choice(len(cands), p=w / w.sum()))]
    return (a, t, act) if a in free and t in free else None


def _simulate(ctx: _Ctx, arena: Arena, n_frames: int, idle: tuple[float, float]) -> _Sim:
    """Play scenes over n_frames; every mouse not in a scene roams. Python floats per mouse and frame
    (M <= 4): faster than numpy on 2-4 element arrays, and the scene logic needs branches anyway."""
    rng, fps, M, T = ctx.rng, ctx.fps, ctx.n_mice, n_frames
    dt = 1.0 / fps
    sq = math.sqrt(dt)
    scale = rng.uniform(0.92, 1.08, M)
    s = scale.tolist()
    noise = rng.standard_normal((T, M, 6)).tolist()
    obj = (float(rng.uniform(0.25, 0.75) * arena.w), float(rng.uniform(0.25, 0.75) * arena.h))
    # start positions spread over the arena, random headings
    x = [float(rng.uniform(0.2, 0.8) * arena.w) for _ in range(M)]
    y = [float(rng.uniform(0.2, 0.8) * arena.h) for _ in range(M)]
    th = [float(rng.uniform(-math.pi, math.pi)) for _ in range(M)]
    v = [0.0] * M
    e = [1.0] * M
    ph = [0.0] * M
    tail = [0.0] * M
    om = [0.0] * M        # roam angular velocity
    vm = [4.0] * M        # roam speed state
    paused = [False] * M
    out_c = np.zeros((T, M, 2))
    out = {k: np.zeros((T, M)) for k in ("th", "e", "phi", "tail", "namp", "nfreq", "thrust")}
    free_at = [int(rng.uniform(*idle) * fps * 0.5) for _ in range(M)]
    busy = [False] * M
    scenes: list[Scene] = []
    events: list[tuple[int, int, str, int, int]] = []
    next_try = n_scenes = n_aborted = 0
    roam = Role("roam")

    def point(o: int, name: str, side: float, me: int) -> tuple[float, float]:
        ux, uy = math.cos(th[o]), math.sin(th[o])
        if name == "object":
            return obj
        if name == "wall":
            d, nx, ny = arena.inward(x[me], y[me])
            return x[me] - nx * d, y[me] - ny * d
        if name == "nose":
            r = _NOSE_REACH * e[o] * s[o]
        elif name == "neck":
            r = _NECK_DIST * e[o] * s[o]
        elif name == "back":
            r = 0.6 * s[o]
        elif name == "tail":
            r = -_TAIL_BASE * s[o]
        elif name == "body":  # the side of the body: left = (sin, -cos) in image coordinates (y down)
            return x[o] + 1.3 * s[o] * side * uy, y[o] - 1.3 * s[o] * side * ux
        elif name == "flank":  # further back and out than "body": where sniffbody differs from sniff
            return (x[o] + s[o] * (-0.8 * ux + 1.6 * side * uy),
                    y[o] + s[o] * (-0.8 * uy - 1.6 * side * ux))
        else:
            raise AssertionError(name)
        return x[o] + r * ux, y[o] + r * uy

    def nose_of(m: int) -> tuple[float, float]:
        r = _NOSE_REACH * e[m] * s[m]
        return x[m] + r * math.cos(th[m]), y[m] + r * math.sin(th[m])

    def until_dist(u) -> float:
        me, o, name, _, side = u
        px, py = point(o if o >= 0 else me, name, side, me)
        nx, ny = nose_of(me)
        return math.hypot(px - nx, py - ny)

    for f in range(T):
        # ---- start scenes whose mice are free
        if f >= next_try:
            free = {m for m in range(M) if not busy[m] and free_at[m] <= f}
            if free:
                triple = _choose_triple(ctx, free)
                if triple is not None:
                    a, t, act = triple
                    sc = Scene(start=f, phases=_scene_phases(ctx, a, t, act), mice=())
                    sc.mice = tuple(sorted({m for p in sc.phases for m in p.roles} | {a, t}))
                    if all(m in free for m in sc.mice):
                        for m in sc.mice:
                            busy[m] = True
                        sc.t_phase = f
                        p0 = sc.phases[0]
                        sc.start_dist = until_dist(p0.until) if p0.until else 0.0
                        scenes.append(sc)
                        n_scenes += 1
            next_try = f + max(1, int(0.3 * fps))
        roles = [roam] * M
        for sc in scenes:
            for m, r in sc.phases[sc.idx].roles.items():
                roles[m] = r
        # ---- move every mouse
        for m in range(M):
            r = roles[m]
            n = noise[f][m]
            mode = r.mode
            turn_max = 8.0
            vd = 0.0
            thd = th[m]
            if mode == "roam":
                u = 0.5 * (1.0 + math.erf(n[5] / math.sqrt(2.0)))  # uniform draw: Markov pause switch
                if u < (0.5 if paused[m] else 0.08) * dt:
                    paused[m] = not paused[m]
                mu = 0.2 if paused[m] else (r.speed or 5.0)
                vm[m] += (mu - vm[m]) * dt / 1.2 + 3.0 * math.sqrt(2 * dt / 1.2) * n[0]
                vm[m] = min(max(vm[m], 0.0), 25.0)
                om[m] += -om[m] * dt / 0.4 + 2.0 * math.sqrt(2 * dt / 0.4) * n[1]
                vd = vm[m]
                thd = th[m] + om[m] * dt * 4
                thd = _avoid_walls(arena, x[m], y[m], thd)
                ed, phd = 1.0, 0.25 * math.sin(f * dt * 0.7 + m)
            elif mode in ("still", "face"):
                vd = 0.0
                if mode == "face":
                    o = r.other
                    thd = math.atan2(y[o] - y[m], x[o] - x[m])
                ed, phd = r.e, r.phi
            elif mode == "move":
                om[m] += -om[m] * dt / 0.4 + 0.8 * math.sqrt(2 * dt / 0.4) * n[1]
                vd = r.speed
                thd = _avoid_walls(arena, x[m], y[m], th[m] + om[m] * dt * 4)
                ed, phd = r.e, r.phi
            elif mode in ("goto", "pursue", "fight"):
                o = r.other if r.other is not None else m
                if mode == "pursue":
                    tx, ty = point(o, "tail", 1.0, m)
                    px, py = tx - r.gap * math.cos(th[o]), ty - r.gap * math.sin(th[o])
                else:
                    px, py = point(o, r.point, r.side, m)
                dx, dy = px - x[m], py - y[m]
                dist = math.hypot(dx, dy)
                thd = math.atan2(dy, dx) if dist > 0.3 else th[m]
                reach = _NOSE_REACH * e[m] * s[m]
                vd = min(max(4.0 * (dist - reach), -3.0), r.speed or 14.0)
                turn_max = 12.0
                ed, phd = r.e, r.phi
            elif mode == "flee":
                o = r.other
                thd = _avoid_walls(arena, x[m], y[m], math.atan2(y[m] - y[o], x[m] - x[o]) + 0.3 * n[1], 6.0)
                vd = r.speed
                turn_max = 14.0
                ed, phd = 1.05, 0.0
            elif mode == "lock":
                o = r.other
                back, lat, ang = r.mount
                uo_x, uo_y = math.cos(th[o]), math.sin(th[o])
                tx = x[o] - back * s[o] * uo_x + lat * s[o] * uo_y
                ty = y[o] - back * s[o] * uo_y - lat * s[o] * uo_x
                al = min(1.0, dt / 0.15)
                x[m] += (tx - x[m]) * al
                y[m] += (ty - y[m]) * al
                th[m] += _wrap(th[o] + ang - th[m]) * al
                ed, phd = r.e, r.phi
                vd = None
            else:
                raise AssertionError(mode)
            if vd is not None:
                dth = _wrap(thd - th[m])
                lim = turn_max * dt
                th[m] = _wrap(th[m] + max(-lim, min(lim, dth * min(1.0, 10 * dt))))
                v[m] += (vd - v[m]) * min(1.0, 6 * dt)
                x[m] += v[m] * math.cos(th[m]) * dt
                y[m] += v[m] * math.sin(th[m]) * dt
            if r.jitter:
                x[m] += r.jitter * sq * n[2]
                y[m] += r.jitter * sq * n[3]
                th[m] = _wrap(th[m] + 0.25 * r.jitter * sq * n[4])
            x[m], y[m] = arena.clamp(x[m], y[m], 1.5 * s[m])
            al = min(1.0, dt / 0.15)
            e[m] += (ed - e[m]) * al
            ph[m] += (phd - ph[m]) * al
            tail[m] += -tail[m] * dt / 0.8 + 0.6 * math.sqrt(2 * dt / 0.8) * n[4]
            out["namp"][f, m] = r.nose_amp
            out["nfreq"][f, m] = r.nose_freq
            out["thrust"][f, m] = r.thrust
        # soft repulsion between roaming mice (bodies do not overlap unless a scene wants contact)
        for m in range(M):
            for o in range(m + 1, M):
                if roles[m].mode in ("roam", "move", "flee") and roles[o].mode in ("roam", "move", "flee"):
                    dx, dy = x[o] - x[m], y[o] - y[m]
                    d = math.hypot(dx, dy)
                    lim = 4.5 * (s[m] + s[o]) / 2
                    if 1e-6 < d < lim:
                        push = 0.25 * (lim - d) / d
                        x[m] -= dx * push
                        y[m] -= dy * push
                        x[o] += dx * push
                        y[o] += dy * push
        for m in range(M):
            out_c[f, m, 0], out_c[f, m, 1] = x[m], y[m]
            out["th"][f, m], out["e"][f, m], out["phi"][f, m], out["tail"][f, m] = th[m], e[m], ph[m], tail[m]
        # ---- advance scenes: phase ends by duration, or by reaching the contact point
        for sc in scenes:
            p = sc.phases[sc.idx]
            elapsed = f + 1 - sc.t_phase
            reached = p.until is not None and until_dist(p.until) < p.until[3]
            if reached or elapsed >= p.frames:
                ok = p.until is None or reached
                keep = ok and elapsed >= p.min_frames
                if p.until is not None and p.labels and sc.start_dist < 8.0:
                    keep = False  # "approach" only when the distance really closed
                if keep:
                    events.extend((a, t, act, sc.t_phase, f + 1) for a, t, act in p.labels)
                if not ok or sc.idx + 1 == len(sc.phases):
                    sc.done = True
                    n_aborted += not ok
                else:
                    sc.idx += 1
                    sc.t_phase = f + 1
                    nxt = sc.phases[sc.idx]
                    sc.start_dist = until_dist(nxt.until) if nxt.until else 0.0
        for sc in [sc for sc in scenes if sc.done]:
            gap = int(rng.uniform(*idle) * fps)
            for m in sc.mice:
                busy[m] = False
                free_at[m] = f + 1 + gap
            scenes.remove(sc)
    return _Sim(center=out_c, heading=out["th"], e=out["e"], phi=out["phi"], tail=out["tail"],
                nose_amp=out["namp"], nose_freq=out["nfreq"], thrust=out["thrust"], scale=scale,
                events=events, scenes=n_scenes, aborted=n_aborted)


def _avoid_walls(arena: Arena, x: float, y: float, thd: float, reach: float = 4.0) -> float:
    """Heading turned away from a wall closer than `reach` cm (slide along it, then back inside)."""
    d, nx, ny = arena.inward(x, y)
    if d >= reach:
        return thd
    hx, hy = math.cos(thd), math.sin(thd)
    dot = hx * nx + hy * ny
    if dot >= 0.2:
        return thd
    push = 0.2 + (reach - d) / reach
    hx, hy = hx + (push - dot) * nx, hy + (push - dot) * ny
    return math.atan2(hy, hx)


# ---------------------------------------------------------------------------------------------- rendering
def _render(sim: _Sim, bodyparts: list[str], arena: Arena, rng: np.random.Generator,
            fps: float) -> np.ndarray:
    """Body model -> pixel coordinates float64 [T, M, K, 2] (no missing data yet)."""
    T, M = sim.heading.shape
    t = np.arange(T)[:, None] / fps
    s = sim.scale[None, :]
    ux, uy = np.cos(sim.heading), np.sin(sim.heading)
    lx, ly = uy, -ux                              # left flank in image coordinates (y down)
    push = sim.thrust * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi, M))
    cx = sim.center[..., 0] + push * ux
    cy = sim.center[..., 1] + push * uy
    nx_ = cx + _NECK_DIST * sim.e * s * ux
    ny_ = cy + _NECK_DIST * sim.e * s * uy
    hth = sim.heading + sim.phi
    hux, huy = np.cos(hth), np.sin(hth)
    hlx, hly = huy, -hux
    phase = np.cumsum(2 * np.pi * sim.nose_freq / fps, axis=0) + rng.uniform(0, 2 * np.pi, M)
    wob_f = sim.nose_amp * np.sin(phase)
    wob_l = 0.5 * sim.nose_amp * np.cos(phase)
    out = np.empty((T, M, len(bodyparts), 2))
    for k, name in enumerate(bodyparts):
        if name in _FRONT:
            fx, fy = _FRONT[name]
            fx, fy = fx * sim.e * s, fy * s
            w = 1.0 if name == "nose" else (0.5 if name == "head" else 0.0)
            px = nx_ + fx * hux + fy * hlx + w * (wob_f * hux + wob_l * hlx)
            py = ny_ + fx * huy + fy * hly + w * (wob_f * huy + wob_l * hly)
        elif name in _BACK:
            bx, by = _BACK[name]
            px = cx + s * (bx * ux + by * lx)
            py = cy + s * (bx * uy + by * ly)
        elif name in _TAIL:
            d = _TAIL[name]
            a = sim.heading + np.pi + sim.tail * (d / 8.0)
            bx, by = cx - _TAIL_BASE * s * ux, cy - _TAIL_BASE * s * uy
            px, py = bx + s * d * np.cos(a), by + s * d * np.sin(a)
        else:  # make_video checked the names
            raise AssertionError(name)
        sd = 0.08 + (0.06 if name in _TAIL else 0.0)
        px, py = arena.clamp_points(px + sd * rng.standard_normal((T, M)),
                                    py + sd * rng.standard_normal((T, M)))
        out[:, :, k, 0] = arena.off_x + px * arena.ppcm
        out[:, :, k, 1] = arena.off_y + py * arena.ppcm
    return out


def _missing_mask(T: int, M: int, bodyparts: list[str], lab: str, fps: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """present bool [T, M, K]: single dropped points, short runs per point, a chronically hard point,
    a mouse hiding now and then and a few whole missing frames (never the first or last frame, so the
    tracking spans the whole video). Returns (present, whole missing frames)."""
    K = len(bodyparts)
    p_point = np.array([0.04 if n == "tail_tip" else 0.012 for n in bodyparts])
    present = rng.random((T, M, K)) >= p_point
    for m in range(M):
        for k in range(K):
            for _ in range(rng.poisson(T / fps * 0.02)):
                s = int(rng.integers(0, T))
                present[s:s + int(rng.geometric(1 / max(1.0, 0.4 * fps))), m, k] = False
        if rng.random() < 0.3:  # the mouse hides (e.g. under the nest) for a second or two
            s = int(rng.integers(0, T))
            present[s:s + int(rng.uniform(0.5, 2.0) * fps), m, :] = False
    if lab == "AdaptableSnail" and "neck" in bodyparts:
        present[:, :, bodyparts.index("neck")] &= rng.random((T, M)) < 0.1  # real: neck missing ~90 %
    elif rng.random() < 0.5:
        k = int(rng.integers(K))
        present[:, :, k] &= rng.random((T, M)) >= rng.uniform(0.1, 0.4)
    whole = 0
    for _ in range(rng.poisson(max(1.0, T / 1500))):
        s = int(rng.integers(1, max(2, T - 1)))
        n = int(rng.integers(1, max(2, int(fps / 3))))
        stop = min(s + n, T - 1)
        present[s:stop] = False
        whole += max(0, stop - s)
    present[0, :, 0] = True
    present[T - 1, :, 0] = True  # keep frames 0 and T-1 (and every mouse) in the file
    return present, whole


def _annotator(events, n_frames: int, fps: float, rng: np.random.Generator, quantum: int = 1):
    """Planted intervals -> annotations: boundary jitter, a few missed short events, no single-frame events,
    and different actions of one pair kept apart except for rare overlaps. `quantum` rounds boundaries to
    multiples of that many frames (BoisterousParrot annotated in steps of 15 frames). Returns (events,
    n_overlaps)."""
    sd = max(0.7, 0.04 * fps)
    noisy = []
    for a, t, act, s, e in events:
        if e - s < 0.6 * fps and rng.random() < 0.12:
            continue  # the annotator missed a short one
        s2 = int(np.clip(s + round(rng.normal(0, sd)), 0, n_frames))
        e2 = int(np.clip(e + round(rng.normal(0, sd)), 0, n_frames))
        if quantum > 1:
            s2, e2 = quantum * round(s2 / quantum), min(n_frames, quantum * round(e2 / quantum))
        if e2 - s2 >= 2:
            noisy.append((a, t, act, s2, e2))
    noisy.sort(key=lambda r: (r[0], r[1], r[3], r[4], r[2]))
    out, overlaps = [], 0
    for a, t, act, s, e in noisy:
        prev = [r for r in out if r[0] == a and r[1] == t and r[4] > s]
        same = [r for r in prev if r[2] == act]
        if same:  # merge with an overlapping interval of the same action
            r = same[-1]
            out[out.index(r)] = (a, t, act, r[3], max(r[4], e))
            continue
        if prev:
            if rng.random() < 0.15:
                overlaps += 1  # keep the overlap (the real data have a few)
            else:
                s = max(r[4] for r in prev)
                if e - s < 2:
                    continue
        out.append((a, t, act, s, e))
    out.sort(key=lambda r: (r[3], r[4], r[0], r[1], r[2]))
    return out, overlaps


# lab quirk (spec/mabe.md §1.3-1.4): the tracker swaps the ids of two mice for a while after they met
# (AdaptableSnail: the 2nd place hand-corrected this); chance per video. Labels keep the true ids.
_ID_SWAP = {"AdaptableSnail": 0.5, "CautiousGiraffe": 0.2, "DeliriousFly": 0.2, "TranquilPanther": 0.2}


def _identity_swaps(xy: np.ndarray, center: np.ndarray, fps: float, rng: np.random.Generator) -> int:
    """Swap two mice's tracking for 1-4 s, starting at a frame where their bodies are within 5 cm (in place).
    Returns the number of swaps (0 or 1)."""
    T, M = center.shape[:2]
    pairs = [(a, b) for a in range(M) for b in range(a + 1, M)]
    a, b = pairs[int(rng.integers(len(pairs)))]
    close = np.flatnonzero(np.linalg.norm(center[:, a] - center[:, b], axis=1) < 5.0)
    close = close[(close > 0) & (close < T - 2)]
    if close.size == 0:
        return 0
    s = int(close[int(rng.integers(close.size))])
    e = min(T - 1, s + int(rng.uniform(1.0, 4.0) * fps))
    xy[s:e, [a, b]] = xy[s:e, [b, a]]
    return 1


# lab quirk (spec/mabe.md §1.5): BoisterousParrot boundaries are mostly multiples of 15 frames
_QUANTUM = {"BoisterousParrot": 15}


# ---------------------------------------------------------------------------------------------- writing
def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _tracking_table(xy: np.ndarray, present: np.ndarray, bodyparts: list[str]) -> pa.Table:
    f, m, k = np.nonzero(present)  # C order: frame, then mouse, then body part
    names = pa.array(bodyparts, type=pa.string())
    return pa.table({
        "video_frame": pa.array(f.astype(np.int64)),
        "mouse_id": pa.array((m + 1).astype(np.int64)),
        "bodypart": pa.DictionaryArray.from_arrays(pa.array(k.astype(np.int32)), names).cast(pa.string()),
        "x": pa.array(xy[f, m, k, 0].astype(np.float32)),
        "y": pa.array(xy[f, m, k, 1].astype(np.float32)),
    })


def _annotation_table(events) -> pa.Table:
    cols = list(zip(*events)) if events else [[], [], [], [], []]
    return pa.table({
        "agent_id": pa.array(np.asarray(cols[0], dtype=np.int64)),
        "target_id": pa.array(np.asarray(cols[1], dtype=np.int64)),
        "action": pa.array(list(cols[2]), type=pa.string()),
        "start_frame": pa.array(np.asarray(cols[3], dtype=np.int64)),
        "stop_frame": pa.array(np.asarray(cols[4], dtype=np.int64)),
    })


# ---------------------------------------------------------------------------------------------- one video
@dataclass
class VideoResult:
    video_id: int
    lab_id: str
    n_frames: int
    events: list[tuple[int, int, str, int, int]]  # 1-based mice, annotated (noisy) intervals
    tracking: pa.Table
    positive_frames: int
    pair_frames: int
    overlaps: int
    whole_missing: int
    out_of_frame: int
    scenes: int = 0
    aborted: int = 0
    id_swaps: int = 0


def make_video(row: pd.Series, video_id: int, n_frames: int, rng: np.random.Generator,
               idle: tuple[float, float] = (1.5, 5.0), fps_quirk: bool = False) -> VideoResult:
    """Simulate, render, degrade and annotate one video of a metadata row (its lab, fps, parts, whitelist).

    fps_quirk: reproduce the real 25-fps AdaptableSnail defect (tracked at 25 fps, labels on a 30-fps frame
    axis, spec/mabe.md §1.4): the written frame numbers are the true ones x 25/30 (the 2nd place's fix
    multiplies them by 30/25). Ground truth in test_solution.csv gets the same defect, as on Kaggle.
    """
    lab = str(row["lab_id"])
    fps = float(row["frames_per_second"])
    whitelist = _normalise_whitelist(row["behaviors_labeled"])
    n_mice = _n_mice(row, whitelist)
    bodyparts = json.loads(row["body_parts_tracked"])
    unknown = [p for p in bodyparts if p not in _FRONT and p not in _BACK and p not in _TAIL]
    if unknown:
        raise MabeDataError(f"the synthetic body model has no point(s) {unknown} (lab {lab})", file=_META_GZ,
                            video=int(row["video_id"]))
    arena = Arena.from_row(row)
    ctx = _Ctx(fps=fps, n_mice=n_mice, whitelist={(a - 1, t - 1, act) for a, t, act in whitelist}, rng=rng)
    sim = _simulate(ctx, arena, n_frames, idle)
    xy = _render(sim, bodyparts, arena, rng, fps)
    swaps = _identity_swaps(xy, sim.center, fps, rng) if rng.random() < _ID_SWAP.get(lab, 0.0) else 0
    present, whole = _missing_mask(n_frames, n_mice, bodyparts, lab, fps, rng)
    # a few coordinates just outside the image (DeepLabCut extrapolation)
    idx = np.flatnonzero(present)
    n_out = max(1, int(idx.size * 3e-4))
    pick = rng.choice(idx, size=n_out, replace=False)
    flat = xy.reshape(-1, 2)
    axis = rng.integers(0, 2, n_out)
    low = rng.random(n_out) < 0.5
    limit = np.where(axis == 0, arena.img_w, arena.img_h)
    flat[pick, axis] = np.where(low, -rng.uniform(0.5, 15, n_out), limit + rng.uniform(0.5, 15, n_out))
    events, overlaps = _annotator(sim.events, n_frames, fps, rng, _QUANTUM.get(lab, 1))
    events = [(a + 1, t + 1, act, s, e) for a, t, act, s, e in events]
    if fps_quirk and lab == "AdaptableSnail" and abs(fps - 25.0) < 0.01:
        events = [(a, t, act, s * 25 // 30, e * 25 // 30) for a, t, act, s, e in events]
        events = [ev for ev in events if ev[4] - ev[3] >= 2]
    pairs = sorted({(a, t) for a, t, _ in whitelist})
    pos = 0
    for pair in pairs:
        mask = np.zeros(n_frames, dtype=bool)
        for a, t, _, s, e in events:
            if (a, t) == pair:
                mask[s:e] = True
        pos += int(mask.sum())
    xyf = xy.astype(np.float32)
    out_of_frame = int(((xyf[..., 0] < 0) | (xyf[..., 0] > arena.img_w) | (xyf[..., 1] < 0)
                        | (xyf[..., 1] > arena.img_h))[present].sum())
    return VideoResult(video_id=video_id, lab_id=lab, n_frames=n_frames, events=events,
                       tracking=_tracking_table(xyf, present, bodyparts), positive_frames=pos,
                       pair_frames=len(pairs) * n_frames, overlaps=overlaps, whole_missing=whole,
                       out_of_frame=out_of_frame, scenes=sim.scenes, aborted=sim.aborted, id_swaps=swaps)


# ---------------------------------------------------------------------------------------------- dataset
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
            richness = [(_n_mice(meta.loc[r], _normalise_whitelist(meta.loc[r, "behaviors_labeled"])),
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


def generate(out_dir: str | Path, n_videos: int = DEFAULT_VIDEOS, n_frames: int = DEFAULT_FRAMES,
             seed: int = 0, labs: list[str] | tuple[str, ...] | None = None,
             test_videos: int = DEFAULT_TEST_VIDEOS, progress: bool = False, fps_quirk: bool = False) -> dict:
    """Write a synthetic dataset in the Kaggle layout into out_dir and return a summary dict.

    n_frames is the mean length; each video gets n_frames x U(0.8, 1.2) frames. Labs are dealt round-robin.
    The same arguments always write the same data. fps_quirk: see `make_video` (off by default: it makes the
    25-fps AdaptableSnail labels lag the pose, as in the real data).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    meta = real_metadata()
    known = annotated_labs(meta, public=True)
    labs = list(DEFAULT_LABS if labs is None else labs)
    bad = [lab for lab in labs if lab not in known]
    if bad or not labs:
        raise MabeDataError(f"unknown or unannotated lab(s) {bad or labs}; choose from {', '.join(known)}",
                            file=_META_GZ)
    if n_videos < 1 or test_videos < 0 or n_frames < 100:
        raise MabeDataError(f"need videos >= 1, test videos >= 0, frames >= 100 (got {n_videos}, "
                            f"{test_videos}, {n_frames})")
    _prepare(out)
    root_ss = np.random.SeedSequence(seed)
    meta_ss, train_ss, test_ss = root_ss.spawn(3)
    mrng = np.random.default_rng(meta_ss)
    offsets: dict = {}
    splits = {"train": _pick_rows(meta, labs, n_videos, offsets, mrng),
              "test": _pick_rows(meta, labs, test_videos, offsets, mrng)}
    taken = set(meta["video_id"].tolist())
    ids = []
    while len(ids) < n_videos + test_videos:
        vid = int(mrng.integers(10_000, 2**31 - 1))
        if vid not in taken:
            taken.add(vid)
            ids.append(vid)
    lengths = [int(round(n_frames * u)) for u in mrng.uniform(0.8, 1.2, n_videos + test_videos)]
    stats = {"train": [], "test": []}
    it = [("train", i) for i in range(n_videos)] + [("test", i) for i in range(test_videos)]
    try:
        from tqdm import tqdm
        bar = tqdm(it, desc="synth videos", unit="video", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = it
    seeds = {"train": train_ss.spawn(n_videos), "test": test_ss.spawn(test_videos)}
    for split, i in bar:
        j = i if split == "train" else n_videos + i
        row = meta.loc[splits[split][i]].copy()
        vid = ids[j]
        res = make_video(row, vid, lengths[j], np.random.default_rng(seeds[split][i]), fps_quirk=fps_quirk)
        row["video_id"] = vid
        row["video_duration_sec"] = round(lengths[j] / float(row["frames_per_second"]), 2)
        stats[split].append((row, res))
        folder = out / f"{split}_tracking" / res.lab_id
        _atomic_parquet(res.tracking, folder / f"{vid}.parquet")
        if split == "train" and res.events:  # nothing happened -> no file (like PleasantMeerkat 1375833299)
            _atomic_parquet(_annotation_table(res.events),
                            out / "train_annotation" / res.lab_id / f"{vid}.parquet")
    for split in ("train", "test"):
        rows = [r for r, _ in stats[split]]
        df = pd.DataFrame(rows, columns=meta.columns) if rows else meta.iloc[:0].copy()
        df = df.astype(meta.dtypes.to_dict())
        _atomic_csv(df, out / f"{split}.csv")
    sol = [r for row, res in stats["test"] for r in _solution_rows(res, row["behaviors_labeled"])]
    sol_cols = ["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame", "lab_id",
                "behaviors_labeled"]
    _atomic_csv(pd.DataFrame(sol, columns=sol_cols), out / "test_solution.csv")
    sub = []
    for row, res in stats["test"]:
        wl = _normalise_whitelist(row["behaviors_labeled"])
        a, t, act = wl[0] if wl else (1, 2, "sniff")
        sub.append({"row_id": len(sub), "video_id": res.video_id, "agent_id": f"mouse{a}",
                    "target_id": "self" if a == t else f"mouse{t}", "action": act, "start_frame": 0,
                    "stop_frame": 1})
    sub_cols = ["row_id", "video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
    _atomic_csv(pd.DataFrame(sub, columns=sub_cols), out / "sample_submission.csv")
    train = [res for _, res in stats["train"]]
    test = [res for _, res in stats["test"]]
    per_action = Counter(act for res in train for _, _, act, _, _ in res.events)
    rows_total = sum(res.tracking.num_rows for res in train + test)
    summary = {
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
        "tracking_rows": rows_total,
        "whole_missing_frames": sum(res.whole_missing for res in train + test),
        "out_of_frame_rows": sum(res.out_of_frame for res in train + test),
        "id_swaps": sum(res.id_swaps for res in train + test),
        "scenes": sum(res.scenes for res in train + test),
        "scenes_aborted": sum(res.aborted for res in train + test),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    args = {"n_videos": n_videos, "n_frames": n_frames, "seed": seed, "labs": labs,
            "test_videos": test_videos, "fps_quirk": fps_quirk}
    marker = out / MARKER
    tmp = marker.with_name(MARKER + ".tmp")
    tmp.write_text(json.dumps({"generator": "features.synth", "args": args,
                               **{k: v for k, v in summary.items() if k not in ("seconds", "out")}},
                              indent=1, sort_keys=True))
    os.replace(tmp, marker)
    return summary


MARKER = "synth.json"  # written last; tells a synthetic folder (safe to regenerate) from real data
_OWN_DIRS = ("train_tracking", "test_tracking", "train_annotation")


def _prepare(out: Path) -> None:
    """Make out ready: refuse a folder with Kaggle files but no marker (real data?); in a folder we wrote
    before, drop our parquet folders so no stale videos of an earlier run stay behind (a cache folder or
    anything else in it is left alone)."""
    if (out / MARKER).is_file():
        (out / MARKER).unlink()
        for name in _OWN_DIRS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    elif any((out / n).exists() for n in ("train.csv", "test.csv") + _OWN_DIRS):
        raise MabeDataError(f"refusing to overwrite: the folder holds Kaggle-layout files but no {MARKER}, "
                            f"so it was not written by features.synth (real data?); choose an empty --out",
                            file=out)
    out.mkdir(parents=True, exist_ok=True)


def _share(videos: list[VideoResult]) -> float:
    """Labelled share of whitelisted (pair, frame) cells (self pairs included)."""
    return sum(v.positive_frames for v in videos) / max(1, sum(v.pair_frames for v in videos))


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m features.synth",
        description="Write a synthetic MABe dataset in the exact Kaggle layout (train.csv, test.csv, "
                    "train_tracking/, train_annotation/, test_tracking/, sample_submission.csv) plus "
                    "test_solution.csv (ground truth of the test videos for the official metric). "
                    "Metadata rows "
                    "copy real annotated rows of train.csv; behaviours are planted from the simulated pose.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True,
                   help="folder to write: created, or one this command wrote before (has synth.json); other "
                        "folders with Kaggle files are refused")
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="training videos")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="mean frames per video (x U(0.8, 1.2))")
    p.add_argument("--seed", type=int, default=0, help="same seed -> same files")
    p.add_argument("--labs", default=",".join(DEFAULT_LABS),
                   help="comma-separated labs to imitate, dealt round-robin: any lab of train.csv with "
                        "annotated videos (the 15 adjective-animal labs, CalMS21_*, CRIM13)")
    p.add_argument("--test-videos", type=int, default=DEFAULT_TEST_VIDEOS,
                   help="test videos (test.csv, test_tracking/, test_solution.csv)")
    p.add_argument("--fps-quirk", action="store_true",
                   help="reproduce the real 25-fps AdaptableSnail label/tracking frame-axis defect "
                        "(written label frames = true x 25/30; the known fix multiplies by 30/25)")
    return p.parse_args(argv)


def format_summary(s: dict) -> str:
    labs = ", ".join(f"{k} {v}" for k, v in sorted(s["labs"].items()))
    acts = ", ".join(f"{k} {v}" for k, v in s["intervals"].items())
    return "\n".join([
        f"wrote {s['out']}: {s['videos']} train + {s['test_videos']} test videos in {s['seconds']} s "
        f"(seed {s['seed']})",
        f"  labs: {labs}",
        f"  frames: {s['frames']:,} train, {s['test_frames']:,} test; "
        f"{s['pair_frames']:,} whitelisted pair-frames",
        f"  intervals per action: {acts}",
        f"  positive share of whitelisted pair-frames: {s['positive_share']:.1%} ("
        + ", ".join(f"{k} {v:.0%}" for k, v in s["positive_share_by_lab"].items()) + ")",
        f"  scenes played: {s['scenes']} ({s['scenes_aborted']} aborted: contact never reached); overlaps "
        f"kept: {s['overlaps']}; videos without annotation file: {s['videos_without_annotation']}",
        f"  tracking rows: {s['tracking_rows']:,}; whole missing frames: {s['whole_missing_frames']}; "
        f"out-of-frame rows: {s['out_of_frame_rows']}; identity swaps: {s['id_swaps']}; "
        f"test intervals: {s['test_intervals']}",
        f"next: python -m features.build --data {s['out']} --out {s['out']}/cache",
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    with cli_guard("python -m features.synth"):
        labs = [x.strip() for x in args.labs.split(",") if x.strip()]
        summary = generate(args.out, n_videos=args.videos, n_frames=args.frames, seed=args.seed, labs=labs,
                           test_videos=args.test_videos, progress=True, fps_quirk=args.fps_quirk)
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
