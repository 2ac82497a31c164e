"""Behaviour scripts: how each action is played (`Motif`) and the phases of the scene that plants it.

A scene is a list of phases; in each phase every mouse of the scene has a `Role` (what it does), and the phase
labels its (agent, target, action) triples over its frames. The simulator (features.synth.simulate) plays
them; the labels it records are the ground truth the annotator then degrades.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from features.labels import ACTIONS

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


_POINTS = ("nose", "neck", "flank", "tail", "back")


def duration_factor(style, rng: np.random.Generator) -> float:
    """Long-tailed per-scene duration factor (median 1), capped at 4."""
    return float(min(4.0, math.exp(rng.normal(0.0, style.dur_sigma))))


def confuse(m, rng: np.random.Generator):
    """Hard mode: a motif with its parameters drawn around the catalogue values (neighbouring actions
    overlap)."""
    point = m.point
    if m.family in ("contact", "fight") and rng.random() < 0.25:
        point = _POINTS[int(rng.integers(len(_POINTS)))]
    f = rng.uniform(0.6, 1.5, 6)
    back, lat, ang = m.mount
    return replace(m, point=point, speed=m.speed * f[0], gap=m.gap * f[1], nose_freq=m.nose_freq * f[2],
                   nose_amp=m.nose_amp * f[3], thrust=m.thrust * f[4], jitter=m.jitter * f[5],
                   e=float(np.clip(m.e + rng.normal(0.0, 0.08), 0.4, 1.15)),
                   mount=(back + rng.normal(0.0, 0.5), lat + rng.normal(0.0, 0.4),
                          ang + rng.normal(0.0, 0.25)))


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
class Ctx:
    """Per-video constants the scene builder needs."""

    fps: float
    n_mice: int
    whitelist: set[tuple[int, int, str]]  # 0-based (agent, target, action)
    rng: np.random.Generator
    style: Any = None                     # hard mode: features.synth.hard.LabStyle; None: the easy generator


def _frames(ctx: Ctx, lo: float, hi: float) -> int:
    sec = ctx.rng.uniform(lo, hi)
    if ctx.style is not None:
        sec *= duration_factor(ctx.style, ctx.rng)
    return max(2, int(round(sec * ctx.fps)))


def _maybe(ctx: Ctx, a: int, t: int, action: str) -> list[tuple[int, int, str]]:
    return [(a, t, action)] if (a, t, action) in ctx.whitelist else []


def scene_phases(ctx: Ctx, a: int, t: int, action: str) -> list[Phase]:
    """The script of one scene planting `action` for agent a (-> target t; t == a for self actions)."""
    m = MOTIFS[action]
    if ctx.style is not None:
        m = confuse(m, ctx.rng)
    posture = dict(e=m.e, phi=m.phi * (1 if ctx.rng.random() < 0.5 else -1), nose_amp=m.nose_amp,
                   nose_freq=m.nose_freq)
    if m.family in _SELF_SCRIPTS:
        return _SELF_SCRIPTS[m.family](ctx, a, action, m, posture)
    side = 1.0 if ctx.rng.random() < 0.5 else -1.0
    go = _go_phase(ctx, a, t, m, side)
    if m.family not in _PAIR_SCRIPTS:
        raise AssertionError(f"no script for family {m.family}")
    return _PAIR_SCRIPTS[m.family](ctx, a, t, action, m, posture, side, go)


# ------------------------------------------------------------------------------------- self scenes
def _still(ctx: Ctx, a: int, action: str, m: Motif, posture: dict) -> list[Phase]:
    return [Phase({a: Role("still", **posture)}, _frames(ctx, *m.hold), [(a, a, action)])]


def _move(ctx: Ctx, a: int, action: str, m: Motif, posture: dict) -> list[Phase]:
    return [Phase({a: Role("move", speed=m.speed, **posture)}, _frames(ctx, *m.hold), [(a, a, action)])]


def _climb(ctx: Ctx, a: int, action: str, m: Motif, posture: dict) -> list[Phase]:
    return [Phase({a: Role("goto", point="wall", speed=12.0)}, int(5 * ctx.fps), [],
                  until=(a, -1, "wall", 1.0, 1.0)),
            Phase({a: Role("goto", point="wall", speed=1.0, **posture)}, _frames(ctx, *m.hold),
                  [(a, a, action)])]


def _object(ctx: Ctx, a: int, action: str, m: Motif, posture: dict) -> list[Phase]:
    return [Phase({a: Role("goto", point="object", speed=12.0)}, int(5 * ctx.fps), [],
                  until=(a, -1, "object", 1.2, 1.0)),
            Phase({a: Role("goto", point="object", speed=m.speed or 1.0, **posture)}, _frames(ctx, *m.hold),
                  [(a, a, action)])]


def _huddle(ctx: Ctx, a: int, action: str, m: Motif, posture: dict) -> list[Phase]:
    """A self action with a partner: lie against another mouse (picked at random)."""
    others = [o for o in range(ctx.n_mice) if o != a]
    o = others[int(ctx.rng.integers(len(others)))]
    return [Phase({a: Role("goto", other=o, point="body", speed=10.0)}, int(5 * ctx.fps), [],
                  until=(a, o, "body", 1.5, 1.0)),
            Phase({a: Role("goto", other=o, point="body", speed=0.5, **posture),
                   o: Role("still", e=0.85)}, _frames(ctx, *m.hold), [(a, a, action)])]


_SELF_SCRIPTS = {"still": _still, "move": _move, "climb": _climb, "object": _object, "huddle": _huddle}


# ------------------------------------------------------------------------------------- pair scenes
def _go_phase(ctx: Ctx, a: int, t: int, m: Motif, side: float) -> Phase:
    """Phase 1 of a pair scene: the agent's nose goes to the target (labelled `approach` where whitelisted
    and the distance really closed); the scene is aborted if it never gets there."""
    if m.family in ("contact", "fight", "mutual"):
        go_point = m.point
    else:
        go_point = "tail" if m.family in ("mount", "pursuit") else "body"
    go_reach = {"pursuit": m.gap + 1.5, "approach": 3.0}.get(m.family, 1.2)
    return Phase({a: Role("goto", other=t, point=go_point, speed=14.0, side=side),
                  t: Role("roam", speed=3.0)},
                 int(5 * ctx.fps), _maybe(ctx, a, t, "approach"), min_frames=int(0.5 * ctx.fps),
                 until=(a, t, go_point, go_reach, side))


def _contact(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    hold = Phase({a: Role("goto", other=t, point=m.point, speed=5.0, side=side, **posture),
                  t: Role("roam", speed=1.5)}, _frames(ctx, *m.hold), [(a, t, action)])
    phases = [go, hold]
    if ctx.rng.random() < 0.5 and (a, t, "disengage") in ctx.whitelist:
        phases.append(Phase({a: Role("flee", other=t, speed=12.0)}, _frames(ctx, 0.7, 1.5),
                            [(a, t, "disengage")]))
    return phases


def _mutual(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    hold = Phase({a: Role("goto", other=t, point="nose", speed=4.0),
                  t: Role("goto", other=a, point="nose", speed=4.0)}, _frames(ctx, *m.hold),
                 [(a, t, action)] + _maybe(ctx, t, a, action))
    return [go, hold]


def _approach(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    go.labels = [(a, t, "approach")]
    phases = [go]
    reactions = [r for r in ("avoid", "escape") if (t, a, r) in ctx.whitelist]
    if reactions and ctx.rng.random() < 0.6:
        r = reactions[int(ctx.rng.integers(len(reactions)))]
        phases.append(Phase({t: Role("flee", other=a, speed=MOTIFS[r].speed), a: Role("still")},
                            _frames(ctx, *MOTIFS[r].hold), [(t, a, r)]))
    return phases


def _pursuit(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    lead = MOTIFS[action].speed
    labels = [(a, t, action)]
    if action in ("chase", "chaseattack"):
        labels += _maybe(ctx, t, a, "escape")
    hold = Phase({a: Role("pursue", other=t, speed=lead * 1.4, gap=m.gap, jitter=m.jitter),
                  t: Role("flee", other=a, speed=lead, jitter=m.jitter * 0.5)}, _frames(ctx, *m.hold), labels)
    return [go, hold]


def _fight_scene(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    reactions = [r for r in ("defend", "submit") if (t, a, r) in ctx.whitelist]
    r = reactions[int(ctx.rng.integers(len(reactions)))] if reactions and ctx.rng.random() < 0.5 else None
    return [go] + _fight(ctx, a, t, action, r, side)


def _mount(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    hold = Phase({a: Role("lock", other=t, e=m.e, thrust=m.thrust, jitter=m.jitter, mount=m.mount),
                  t: Role("still", e=0.95)}, _frames(ctx, *m.hold), [(a, t, action)])
    return [go, hold]


def _disengage(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    hold = Phase({a: Role("goto", other=t, point="neck", speed=5.0), t: Role("roam", speed=1.5)},
                 _frames(ctx, 1.0, 2.0), _maybe(ctx, a, t, "sniff"))
    flee = Phase({a: Role("flee", other=t, speed=m.speed)}, _frames(ctx, *m.hold), [(a, t, action)])
    return [go, hold, flee]


def _react(ctx, a, t, action, m, posture, side, go) -> list[Phase]:
    """The target initiates: approaches (escape/avoid/flinch) or attacks (defend/submit); a reacts."""
    init = Phase({t: Role("goto", other=a, point="body", speed=14.0, side=side),
                  a: Role("roam", speed=2.0)},
                 int(5 * ctx.fps), _maybe(ctx, t, a, "approach"), min_frames=int(0.5 * ctx.fps),
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
        return [init, Phase(roles, _frames(ctx, *m.hold), labels)]
    return [init] + _fight(ctx, t, a, "attack", action, side)


def _fight(ctx: Ctx, a: int, t: int, action: str, reaction: str | None, side: float) -> list[Phase]:
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


_PAIR_SCRIPTS = {"contact": _contact, "mutual": _mutual, "approach": _approach, "pursuit": _pursuit,
                 "fight": _fight_scene, "mount": _mount, "disengage": _disengage, "react": _react}
