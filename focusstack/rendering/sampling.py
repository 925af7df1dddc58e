"""Random scenes after VAEEDOF's Algorithm 1, one per sample index, fully determined by
``(seed, index)``: the sample's generator is ``numpy.random.Generator(PCG64([seed, index]))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focusstack.rendering.config import RenderConfig
from focusstack.rendering.procedural import procedural_alpha, procedural_texture
from focusstack.rendering.scene import Camera, Plane, Scene
from focusstack.rendering.sources import (
    Source,
    discover_backgrounds,
    discover_subjects,
    load_rgb,
    load_subject,
    sample_split,
    split_sources,
)
from focusstack.rendering.thinlens import scene_margin

#: Projected subject centres are drawn in +-this fraction of the frame width from the centre.
CENTRE_RANGE = 0.4
#: Procedural textures are never drawn larger than this (px per side).
MAX_PROCEDURAL_PX = 8192


@dataclass(frozen=True)
class Pools:
    """Source pools per split; ``None`` means procedural."""

    subjects: dict[str, list[Source]] | None
    backgrounds: dict[str, list[Source]] | None

    def summary(self) -> dict:
        def count(pool: dict | None) -> dict | str:
            return "procedural" if pool is None else {k: len(v) for k, v in pool.items()}

        return {"subjects": count(self.subjects), "backgrounds": count(self.backgrounds)}


def build_pools(config: RenderConfig) -> Pools:
    subjects = backgrounds = None
    if config.subjects is not None:
        train, val = split_sources(discover_subjects(config.subjects), config.val_fraction, "--subjects")
        subjects = {"train": train, "val": val}
    if config.backgrounds is not None:
        train, val = split_sources(discover_backgrounds(config.backgrounds), config.val_fraction, "--backgrounds")
        backgrounds = {"train": train, "val": val}
    return Pools(subjects, backgrounds)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([int(seed), int(index)]))


def _distances(rng: np.random.Generator, n: int, lo: float, hi: float, gap: float) -> list[float]:
    """n distances uniform in [lo, hi], at least ``gap`` apart, sorted near to far."""
    for _ in range(1000):
        d = np.sort(rng.uniform(lo, hi, n))
        if n < 2 or np.min(np.diff(d)) >= gap:
            return [float(x) for x in d]
    # fall back: uniform in the shrunk range, then spread by the gap (always feasible)
    d = np.sort(rng.uniform(lo, hi - gap * (n - 1), n))
    return [float(x + i * gap) for i, x in enumerate(d)]


def _pick(rng: np.random.Generator, pool: list[Source], n: int) -> list[Source]:
    """n sources, without repeats while the pool lasts."""
    order: list[int] = []
    while len(order) < n:
        order.extend(int(i) for i in rng.permutation(len(pool)))
    return [pool[i] for i in order[:n]]


def _gains(rng: np.random.Generator, config: RenderConfig) -> tuple[tuple[float, float, float], dict]:
    ev = float(rng.uniform(-config.exposure_ev, config.exposure_ev))
    wb = float(rng.uniform(-config.white_balance, config.white_balance))
    tint = float(rng.uniform(-config.tint, config.tint))
    raw = np.array([1.0 + wb, 1.0 - tint, 1.0 - wb])
    lum = float(raw @ np.array([0.2126, 0.7152, 0.0722]))
    gains = raw / lum * 2.0**ev
    return (float(gains[0]), float(gains[1]), float(gains[2])), {
        "exposure_ev": ev,
        "white_balance": wb,
        "tint": tint,
        "rgb_gains": [float(g) for g in gains],
    }


def sample_scene(config: RenderConfig, index: int, pools: Pools) -> tuple[Scene, dict]:
    """The scene of sample ``index`` and the sample-level facts for meta.json."""
    rng = sample_rng(config.seed, index)
    split = sample_split(index, config.val_fraction)
    n_frames = int(rng.integers(config.frames_min, config.frames_max + 1))
    n_sub = n_frames - 1
    focal = float(rng.uniform(config.focal_min_mm, config.focal_max_mm))
    fnumber = float(math.exp(rng.uniform(math.log(config.fstop_min), math.log(config.fstop_max))))
    camera = Camera(focal, fnumber, config.sensor_width_mm, config.resolution)
    dists = _distances(rng, n_sub, config.subject_distance_min_m, config.subject_distance_max_m,
                       config.min_plane_gap_m)
    subj_pool = None if pools.subjects is None else pools.subjects[split]
    bg_pool = None if pools.backgrounds is None else pools.backgrounds[split]
    subj_sources = _pick(rng, subj_pool, n_sub) if subj_pool else [None] * n_sub
    bg_source = _pick(rng, bg_pool, 1)[0] if bg_pool else None
    view = config.sensor_width_mm / focal  # frame width at 1 m, in metres
    res = config.resolution

    planes: list[Plane] = []
    for i, (z, src) in enumerate(zip(dists, subj_sources)):
        tex_seed = int(rng.integers(0, 2**63))
        scale = float(rng.uniform(config.subject_scale_min, config.subject_scale_max))
        cx, cy = (float(v) for v in rng.uniform(-CENTRE_RANGE, CENTRE_RANGE, 2))
        rot = float(rng.uniform(-config.rotation_max_deg, config.rotation_max_deg))
        tx, ty = (float(v) for v in rng.uniform(-config.tilt_max_deg, config.tilt_max_deg, 2))
        proc_aspect = float(math.exp(rng.uniform(math.log(0.6), math.log(1.6))))
        extra: dict = {"scale": scale, "projected_centre": [cx, cy]}
        texture = load_subject(src) if src is not None else None
        if texture is None:  # procedural texture, or an RGB subject without matte
            trng = sample_rng(tex_seed, 0)
            th = int(min(MAX_PROCEDURAL_PX, max(16, math.ceil(scale * res * 1.1))))
            if src is None:
                tw = int(min(MAX_PROCEDURAL_PX, max(16, round(th * proc_aspect))))
                rgb = procedural_texture(trng, th, tw)
                extra["procedural_seed"] = tex_seed
            else:
                rgb = load_rgb(src.path)
                th, tw = rgb.shape[:2]
                extra["procedural_matte_seed"] = tex_seed
            texture = np.dstack([rgb, procedural_alpha(trng, th, tw)])
        th, tw = texture.shape[:2]
        hh = 0.5 * scale * z * view
        hw = hh * tw / th
        plane = Plane(
            name=f"subject{i}",
            center_m=(cx * z * view, cy * z * view, z),
            half_size_m=(hw, hh),
            texture=texture,
            rotation_deg=rot,
            tilt_x_deg=tx,
            tilt_y_deg=ty,
            source=("procedural" if src is None else src.id),
            extra=extra,
        )
        # keep the tilted plane clear of its neighbours' depths (a clean back-to-front order)
        prev = dists[i - 1] if i > 0 else max(config.subject_distance_min_m * 0.5, 2 * focal / 1000.0)
        nxt = dists[i + 1] if i + 1 < n_sub else config.background_distance_m
        allowed = 0.4 * min(z - prev, nxt - z)
        for _ in range(3):
            z0, z1 = plane.depth_range_m()
            half = max(z - z0, z1 - z)
            if half <= allowed:
                break
            plane.tilt_x_deg *= allowed / half * 0.98
            plane.tilt_y_deg *= allowed / half * 0.98
        planes.append(plane)

    bg_seed = int(rng.integers(0, 2**63))
    zoom = float(rng.uniform(1.0, 1.4))
    ox, oy = (float(v) for v in rng.uniform(0.0, 1.0, 2))
    flip = bool(rng.uniform() < 0.5)
    gains, lighting = _gains(rng, config)
    zb = config.background_distance_m
    background = Plane(
        name="background",
        center_m=(0.0, 0.0, zb),
        half_size_m=(0.5 * zb * view, 0.5 * zb * view),
        texture=np.zeros((2, 2, 3), np.uint8),  # replaced below, once the canvas size is known
        fill_view=True,
        source=("procedural" if bg_source is None else bg_source.id),
        extra={"zoom": zoom, "offset": [ox, oy], "flip": flip},
    )
    planes.append(background)
    focus = [p.distance_m for p in planes]
    scene = Scene(camera, planes, focus, gains)

    canvas = res + 2 * scene_margin(scene)
    if bg_source is None:
        side = int(min(MAX_PROCEDURAL_PX, canvas))
        background.texture = procedural_texture(sample_rng(bg_seed, 1), side, side)
        background.extra["procedural_seed"] = bg_seed
    else:
        img = load_rgb(bg_source.path)
        h, w = img.shape[:2]
        side = max(2, int(round(min(h, w) / zoom)))
        y0 = int(round(oy * (h - side)))
        x0 = int(round(ox * (w - side)))
        crop = img[y0 : y0 + side, x0 : x0 + side]
        background.texture = np.ascontiguousarray(crop[:, ::-1] if flip else crop)
        background.extra["crop_xywh"] = [x0, y0, side, side]

    facts = {
        "index": index,
        "split": split,
        "lighting": lighting,
        "subject_sources": [p.source for p in planes[:-1]],
        "background_source": background.source,
    }
    return scene, facts
