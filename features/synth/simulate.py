"""Simulator: play behaviour scenes over a video; every mouse not in a scene roams the arena.

Python floats per mouse and frame (M <= 4): faster than numpy on 2-4 element arrays, and the scene logic
needs branches anyway. The random draws happen in a fixed order, so the same generator state gives the same
trajectories (the dataset's byte-identity for a seed rests on it).
"""
from __future__ import annotations

import math

import numpy as np

from features.synth.arena import Arena, avoid_walls, wrap
from features.synth.body import NECK_DIST, NOSE_REACH, TAIL_BASE, Sim
from features.synth.hard import DECOY_SHARE, look_alike
from features.synth.scenes import MOTIFS, Ctx, Role, Scene, scene_phases

_ROAM = Role("roam")


def _choose_triple(ctx: Ctx, free: set[int]):
    """A whitelisted (agent, target, action) drawn by motif weight; None when its mice are not free (drawing
    first and checking after keeps the action mix independent of how many mice happen to be free)."""
    if not ctx.whitelist:
        return None
    cands = sorted(ctx.whitelist)
    w = np.array([MOTIFS[act].weight for _, _, act in cands])
    if ctx.style is not None:  # hard mode: long-tailed per-lab action priors
        w = w * np.array([ctx.style.prior[act] for _, _, act in cands])
    a, t, act = cands[int(ctx.rng.choice(len(cands), p=w / w.sum()))]
    return (a, t, act) if a in free and t in free else None


class _World:
    """The state of every mouse (cm, rad) and of the running scenes, advanced one frame at a time."""

    def __init__(self, ctx: Ctx, arena: Arena, n_frames: int, idle: tuple[float, float]):
        rng, fps, M, T = ctx.rng, ctx.fps, ctx.n_mice, n_frames
        self.ctx, self.arena, self.idle, self.fps, self.M = ctx, arena, idle, fps, M
        self.dt = 1.0 / fps
        self.sq = math.sqrt(self.dt)
        self.scale = rng.uniform(0.92, 1.08, M)
        self.s = self.scale.tolist()
        self.noise = rng.standard_normal((T, M, 6)).tolist()
        self.obj = (float(rng.uniform(0.25, 0.75) * arena.w), float(rng.uniform(0.25, 0.75) * arena.h))
        # start positions spread over the arena, random headings
        self.x = [float(rng.uniform(0.2, 0.8) * arena.w) for _ in range(M)]
        self.y = [float(rng.uniform(0.2, 0.8) * arena.h) for _ in range(M)]
        self.th = [float(rng.uniform(-math.pi, math.pi)) for _ in range(M)]
        self.v = [0.0] * M
        self.e = [1.0] * M
        self.ph = [0.0] * M
        self.tail = [0.0] * M
        self.om = [0.0] * M        # roam angular velocity
        self.vm = [4.0] * M        # roam speed state
        self.paused = [False] * M
        self.out_c = np.zeros((T, M, 2))
        self.out = {k: np.zeros((T, M)) for k in ("th", "e", "phi", "tail", "namp", "nfreq", "thrust")}
        self.free_at = [int(rng.uniform(*idle) * fps * 0.5) for _ in range(M)]
        self.busy = [False] * M
        self.scenes: list[Scene] = []
        self.events: list[tuple[int, int, str, int, int]] = []
        self.next_try = self.n_scenes = self.n_aborted = self.n_decoys = 0

    # ---- geometry
    def point(self, o: int, name: str, side: float, me: int) -> tuple[float, float]:
        x, y, th, e, s = self.x, self.y, self.th, self.e, self.s
        ux, uy = math.cos(th[o]), math.sin(th[o])
        if name == "object":
            return self.obj
        if name == "wall":
            d, nx, ny = self.arena.inward(x[me], y[me])
            return x[me] - nx * d, y[me] - ny * d
        if name == "nose":
            r = NOSE_REACH * e[o] * s[o]
        elif name == "neck":
            r = NECK_DIST * e[o] * s[o]
        elif name == "back":
            r = 0.6 * s[o]
        elif name == "tail":
            r = -TAIL_BASE * s[o]
        elif name == "body":  # the side of the body: left = (sin, -cos) in image coordinates (y down)
            return x[o] + 1.3 * s[o] * side * uy, y[o] - 1.3 * s[o] * side * ux
        elif name == "flank":  # further back and out than "body": where sniffbody differs from sniff
            return (x[o] + s[o] * (-0.8 * ux + 1.6 * side * uy),
                    y[o] + s[o] * (-0.8 * uy - 1.6 * side * ux))
        else:
            raise AssertionError(name)
        return x[o] + r * ux, y[o] + r * uy

    def nose_of(self, m: int) -> tuple[float, float]:
        r = NOSE_REACH * self.e[m] * self.s[m]
        return self.x[m] + r * math.cos(self.th[m]), self.y[m] + r * math.sin(self.th[m])

    def until_dist(self, u) -> float:
        me, o, name, _, side = u
        px, py = self.point(o if o >= 0 else me, name, side, me)
        nx, ny = self.nose_of(me)
        return math.hypot(px - nx, py - ny)

    # ---- one frame
    def start_scene(self, f: int) -> None:
        """Start a scene whose mice are free (tried every 0.3 s)."""
        if f < self.next_try:
            return
        free = {m for m in range(self.M) if not self.busy[m] and self.free_at[m] <= f}
        if free:
            triple = _choose_triple(self.ctx, free)
            if triple is not None:
                a, t, act = triple
                decoy = self.ctx.style is not None and self.ctx.rng.random() < DECOY_SHARE
                if decoy:  # hard mode: an unlabelled look-alike of the chosen action
                    act = look_alike(act, a, t, self.ctx.whitelist, self.ctx.rng)
                sc = Scene(start=f, phases=scene_phases(self.ctx, a, t, act), mice=())
                if decoy:
                    for p in sc.phases:
                        p.labels = []
                    self.n_decoys += 1
                sc.mice = tuple(sorted({m for p in sc.phases for m in p.roles} | {a, t}))
                if all(m in free for m in sc.mice):
                    for m in sc.mice:
                        self.busy[m] = True
                    sc.t_phase = f
                    p0 = sc.phases[0]
                    sc.start_dist = self.until_dist(p0.until) if p0.until else 0.0
                    self.scenes.append(sc)
                    self.n_scenes += 1
        self.next_try = f + max(1, int(0.3 * self.fps))

    def roles(self) -> list[Role]:
        roles = [_ROAM] * self.M
        for sc in self.scenes:
            for m, r in sc.phases[sc.idx].roles.items():
                roles[m] = r
        return roles

    def steer(self, m: int, r: Role, n: list[float], f: int):
        """(speed, heading, max turn rate, elongation, head yaw) that mouse m aims at under role r;
        speed None: the role placed the mouse itself (mount lock)."""
        x, y, th, s, dt, arena = self.x, self.y, self.th, self.s, self.dt, self.arena
        mode = r.mode
        turn_max = 8.0
        if mode == "roam":
            om, vm, paused = self.om, self.vm, self.paused
            u = 0.5 * (1.0 + math.erf(n[5] / math.sqrt(2.0)))  # uniform draw: Markov pause switch
            if u < (0.5 if paused[m] else 0.08) * dt:
                paused[m] = not paused[m]
            mu = 0.2 if paused[m] else (r.speed or 5.0)
            vm[m] += (mu - vm[m]) * dt / 1.2 + 3.0 * math.sqrt(2 * dt / 1.2) * n[0]
            vm[m] = min(max(vm[m], 0.0), 25.0)
            om[m] += -om[m] * dt / 0.4 + 2.0 * math.sqrt(2 * dt / 0.4) * n[1]
            thd = th[m] + om[m] * dt * 4
            thd = avoid_walls(arena, x[m], y[m], thd)
            return vm[m], thd, turn_max, 1.0, 0.25 * math.sin(f * dt * 0.7 + m)
        if mode in ("still", "face"):
            thd = th[m]
            if mode == "face":
                o = r.other
                thd = math.atan2(y[o] - y[m], x[o] - x[m])
            return 0.0, thd, turn_max, r.e, r.phi
        if mode == "move":
            self.om[m] += -self.om[m] * dt / 0.4 + 0.8 * math.sqrt(2 * dt / 0.4) * n[1]
            return r.speed, avoid_walls(arena, x[m], y[m], th[m] + self.om[m] * dt * 4), turn_max, r.e, r.phi
        if mode in ("goto", "pursue", "fight"):
            o = r.other if r.other is not None else m
            if mode == "pursue":
                tx, ty = self.point(o, "tail", 1.0, m)
                px, py = tx - r.gap * math.cos(th[o]), ty - r.gap * math.sin(th[o])
            else:
                px, py = self.point(o, r.point, r.side, m)
            dx, dy = px - x[m], py - y[m]
            dist = math.hypot(dx, dy)
            thd = math.atan2(dy, dx) if dist > 0.3 else th[m]
            reach = NOSE_REACH * self.e[m] * s[m]
            return min(max(4.0 * (dist - reach), -3.0), r.speed or 14.0), thd, 12.0, r.e, r.phi
        if mode == "flee":
            o = r.other
            thd = avoid_walls(arena, x[m], y[m], math.atan2(y[m] - y[o], x[m] - x[o]) + 0.3 * n[1], 6.0)
            return r.speed, thd, 14.0, 1.05, 0.0
        if mode == "lock":
            self.lock(m, r)
            return None, th[m], turn_max, r.e, r.phi
        raise AssertionError(mode)

    def lock(self, m: int, r: Role) -> None:
        """Mount: the agent's centre follows a point on the target's back."""
        x, y, th, s = self.x, self.y, self.th, self.s
        o = r.other
        back, lat, ang = r.mount
        uo_x, uo_y = math.cos(th[o]), math.sin(th[o])
        tx = x[o] - back * s[o] * uo_x + lat * s[o] * uo_y
        ty = y[o] - back * s[o] * uo_y - lat * s[o] * uo_x
        al = min(1.0, self.dt / 0.15)
        x[m] += (tx - x[m]) * al
        y[m] += (ty - y[m]) * al
        th[m] += wrap(th[o] + ang - th[m]) * al

    def move(self, m: int, r: Role, f: int) -> None:
        x, y, th, v, dt, sq = self.x, self.y, self.th, self.v, self.dt, self.sq
        n = self.noise[f][m]
        vd, thd, turn_max, ed, phd = self.steer(m, r, n, f)
        if vd is not None:
            dth = wrap(thd - th[m])
            lim = turn_max * dt
            th[m] = wrap(th[m] + max(-lim, min(lim, dth * min(1.0, 10 * dt))))
            v[m] += (vd - v[m]) * min(1.0, 6 * dt)
            x[m] += v[m] * math.cos(th[m]) * dt
            y[m] += v[m] * math.sin(th[m]) * dt
        if r.jitter:
            x[m] += r.jitter * sq * n[2]
            y[m] += r.jitter * sq * n[3]
            th[m] = wrap(th[m] + 0.25 * r.jitter * sq * n[4])
        x[m], y[m] = self.arena.clamp(x[m], y[m], 1.5 * self.s[m])
        al = min(1.0, dt / 0.15)
        self.e[m] += (ed - self.e[m]) * al
        self.ph[m] += (phd - self.ph[m]) * al
        self.tail[m] += -self.tail[m] * dt / 0.8 + 0.6 * math.sqrt(2 * dt / 0.8) * n[4]
        self.out["namp"][f, m] = r.nose_amp
        self.out["nfreq"][f, m] = r.nose_freq
        self.out["thrust"][f, m] = r.thrust

    def repel(self, roles: list[Role]) -> None:
        """Soft repulsion between roaming mice (bodies do not overlap unless a scene wants contact)."""
        x, y, s = self.x, self.y, self.s
        for m in range(self.M):
            for o in range(m + 1, self.M):
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

    def record(self, f: int) -> None:
        out = self.out
        for m in range(self.M):
            self.out_c[f, m, 0], self.out_c[f, m, 1] = self.x[m], self.y[m]
            out["th"][f, m], out["e"][f, m], out["phi"][f, m], out["tail"][f, m] = (
                self.th[m], self.e[m], self.ph[m], self.tail[m])

    def advance_scenes(self, f: int) -> None:
        """A phase ends by duration, or by reaching the contact point; finished scenes free their mice."""
        for sc in self.scenes:
            p = sc.phases[sc.idx]
            elapsed = f + 1 - sc.t_phase
            reached = p.until is not None and self.until_dist(p.until) < p.until[3]
            if reached or elapsed >= p.frames:
                ok = p.until is None or reached
                keep = ok and elapsed >= p.min_frames
                if p.until is not None and p.labels and sc.start_dist < 8.0:
                    keep = False  # "approach" only when the distance really closed
                if keep:
                    self.events.extend((a, t, act, sc.t_phase, f + 1) for a, t, act in p.labels)
                if not ok or sc.idx + 1 == len(sc.phases):
                    sc.done = True
                    self.n_aborted += not ok
                else:
                    sc.idx += 1
                    sc.t_phase = f + 1
                    nxt = sc.phases[sc.idx]
                    sc.start_dist = self.until_dist(nxt.until) if nxt.until else 0.0
        for sc in [sc for sc in self.scenes if sc.done]:
            gap = int(self.ctx.rng.uniform(*self.idle) * self.fps)
            for m in sc.mice:
                self.busy[m] = False
                self.free_at[m] = f + 1 + gap
            self.scenes.remove(sc)


def simulate(ctx: Ctx, arena: Arena, n_frames: int, idle: tuple[float, float]) -> Sim:
    """Play scenes over n_frames; every mouse not in a scene roams."""
    w = _World(ctx, arena, n_frames, idle)
    for f in range(n_frames):
        w.start_scene(f)
        roles = w.roles()
        for m in range(w.M):
            w.move(m, roles[m], f)
        w.repel(roles)
        w.record(f)
        w.advance_scenes(f)
    out = w.out
    return Sim(center=w.out_c, heading=out["th"], e=out["e"], phi=out["phi"], tail=out["tail"],
               nose_amp=out["namp"], nose_freq=out["nfreq"], thrust=out["thrust"], scale=w.scale,
               events=w.events, scenes=w.n_scenes, aborted=w.n_aborted, decoys=w.n_decoys)
