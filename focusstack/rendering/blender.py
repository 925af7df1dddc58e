"""The ``blender`` engine: the same sampled scene, rendered by Cycles through ``bpy``.

How one sample is rendered (``render_blender_scene``):

1. The scene from ``sampling.sample_scene`` (the same planes, camera and lighting gains as the
   thin-lens engine for the same seed and index) is written to a job folder: one texture per
   plane (linear straight-alpha RGBA float32, downscaled with antialiasing to about its
   projected size, exactly as the thin-lens engine prepares it) and ``job.json`` with every
   plane's pose, the camera, the lighting and the renders to make.
2. ``blender_child.py`` runs in a **fresh Python process** that imports ``bpy`` (the
   interpreter is ``RenderConfig.blender_python``, else ``$FOCUSSTACK_BLENDER_PYTHON``, else
   this one), builds the planes as textured quads (Diffuse BSDF mixed with Transparent by the
   texture alpha), a camera with the sampled focal length on a 36 mm sensor, a smooth sky and a
   sun without shadows, and renders one frame per focus distance with Cycles' depth of field plus
   an all-in-focus GT with depth of field off. It hands back scene-linear float images.
3. Back here the images are encoded to sRGB exactly as the thin-lens engine does (the same
   function) and the depth map, sharpest-frame masks and mattes are computed from the sampled
   geometry with the thin-lens rasteriser (same definitions, alpha >= 0.5), so every file of
   the output layout means the same as with ``--engine thinlens``.

Why a subprocess per sample: bpy is a 400 MB module with process-wide state (one scene, one
Cycles session, its own thread pool), so one fresh process per sample cannot leak state from one
sample into the next and gives identical bytes whichever worker renders it; a Cycles crash
fails one sample with a message instead of killing a worker. bpy 5.0 also pins numpy < 2, so
it often lives in another environment than focusstack (numpy 2), and a subprocess can run
that environment's Python. The cost is about 1.5 s of bpy start-up per sample, small against
the renders themselves.

Optics: Cycles' camera is a pinhole with a lens disc of diameter ``focal / f-stop`` in front,
which blurs a point at depth ``Z`` focused at ``S`` by ``A f_px |1/Z - 1/S|`` px. The thin-lens
formula recorded in meta.json has an extra magnification ``S / (S - f)`` (the sensor sits at
``fS/(S-f)``, not at ``f``), so each frame is rendered with the f-stop ``N (S - f) / S``: the
blur in the frames then equals the ``coc_px`` in meta.json.

Lighting: the sample's RGB gains (exposure, white balance, tint; the same as thin-lens) are
split between a sun (no shadows, random direction and colour) and a sky whose radiance varies
linearly with direction (random direction, strength and colour). They are scaled so that a
plane facing the camera gets exactly the gains: fronto-parallel planes look as in the thin-lens
engine, tilted planes get lighter or darker with their orientation. The extra draws come from
their own generator ``PCG64([seed, index, 7])``, so the thin-lens sampling stream is untouched.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from focusstack.errors import ConfigError, FocusstackError
from focusstack.rendering.scene import Plane, Scene
from focusstack.rendering.thinlens import RenderResult, _prepare_texture, linear_to_srgb, rasterize_plane, scene_margin

CHILD_SCRIPT = Path(__file__).with_name("blender_child.py")
JOB_FORMAT = "focusstack-blender-job/1"
ENV_PYTHON = "FOCUSSTACK_BLENDER_PYTHON"
#: Oldest bpy accepted (the engine is verified with bpy 5.0.1, the version the blender extra pins).
MIN_BPY = (5, 0)
#: Third word of the generator of the Blender-only draws (lighting, Cycles seed).
LIGHT_STREAM = 7
#: Sun share of the light on a camera-facing plane, sun angle from the view axis (deg),
#: sun colour (+-warmth), sky gradient strength and colour spread.
SUN_SHARE = (0.0, 0.5)
SUN_ANGLE_DEG = (10.0, 60.0)
SUN_WARMTH = 0.2
SKY_GRADIENT = (0.0, 0.5)
SKY_TINT = 0.3
#: Seconds one sample may take in Blender before it is stopped.
CHILD_TIMEOUT_S = 3600.0


class BlenderRenderError(FocusstackError):
    """Blender (the bpy subprocess) failed on a sample."""


def missing_bpy_error(python: str, detail: str) -> ConfigError:
    detail = detail.replace("[", "(").replace("]", ")")  # e.g. "[Errno 2]": no rich markup
    return ConfigError(
        "--engine blender needs the bpy package (Blender as a Python module), which "
        f"{python} cannot import; nothing was rendered",
        expected="`import bpy` (bpy 5.0, Python 3.11) to work in the Blender Python",
        actual=detail,
        # no square brackets: the CLI prints messages as rich markup, which would eat "[blender]"
        fix="pip install bpy==5.0.1 (the blender extra of focusstack; it needs Python 3.11 and "
        f"numpy < 2), or point ${ENV_PYTHON} to a Python that has bpy, or use --engine thinlens",
    )


_PROBED: dict[str, str] = {}


def blender_python(configured: str | None = None) -> str:
    """The interpreter that runs Blender: ``configured``, else ``$FOCUSSTACK_BLENDER_PYTHON``,
    else this one."""
    return configured or os.environ.get(ENV_PYTHON) or sys.executable


def check_blender(configured: str | None = None) -> str:
    """Make sure the Blender Python imports bpy; return its bpy version (cached per process).

    Raises ``ConfigError`` (exit code 2) naming the install command when it does not.
    """
    python = blender_python(configured)
    if python in _PROBED:
        return _PROBED[python]
    if python == sys.executable and importlib.util.find_spec("bpy") is None:
        raise missing_bpy_error(python, "ModuleNotFoundError: No module named 'bpy'")
    try:
        proc = subprocess.run(
            [python, "-c", "import bpy; print('BPY', bpy.app.version_string)"],
            capture_output=True, text=True, timeout=300, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise missing_bpy_error(python, f"{type(exc).__name__}: {exc}") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BPY ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
        raise missing_bpy_error(python, tail)
    version = lines[-1][4:].strip()
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < MIN_BPY:
        raise missing_bpy_error(python, f"bpy {version} (too old)")
    _PROBED[python] = version
    return version


# --------------------------------------------------------------------------------------------
# scene -> job


def _to_blender() -> np.ndarray:
    """Camera coordinates (X right, Y down, Z forward) to Blender's (camera looks down -Z, +Y up)."""
    return np.diag([1.0, -1.0, -1.0])


def plane_matrix(plane: Plane, centre_m: np.ndarray) -> list[list[float]]:
    """4 x 4 ``matrix_world`` of a plane's quad: local +X along the texture's right, +Y along its
    up (so UV (0, 0) is the texture's bottom-left), +Z towards the camera."""
    m = _to_blender()
    e1, e2, _ = plane.axes()
    x = m @ e1
    y = m @ (-e2)
    z = np.cross(x, y)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2] = x, y, z
    out[:3, 3] = m @ centre_m
    return out.tolist()


def blender_fstop(fnumber: float, focal_mm: float, focus_m: float) -> float:
    """Cycles f-stop that gives the thin-lens CoC ``f^2 / (N (S - f)) |Z - S| / Z`` (see above)."""
    f = focal_mm / 1000.0
    return fnumber * (focus_m - f) / focus_m


def lighting(gains: tuple[float, float, float], rng: np.random.Generator) -> dict:
    """Sun and sky of one sample (Blender world coordinates), scaled so that a Lambertian plane
    facing the camera (normal +Z) reflects exactly ``gains`` x its albedo.

    Sky radiance ``L(w) = mean + gradient * dot(w, direction)``: a Lambertian plane with normal
    ``n`` reflects ``albedo (mean + 2/3 gradient dot(n, direction))``. A sun of irradiance ``E``
    at angle ``theta`` to ``n`` adds ``albedo E cos(theta) / pi``.
    """
    target = np.asarray(gains, dtype=np.float64)
    lum = np.array([0.2126, 0.7152, 0.0722])
    share = float(rng.uniform(*SUN_SHARE))
    theta = math.radians(float(rng.uniform(*SUN_ANGLE_DEG)))
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    warmth = float(rng.uniform(-SUN_WARMTH, SUN_WARMTH))
    sun_dir = np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])
    tint = np.array([1.0 + warmth, 1.0, 1.0 - warmth])
    tint /= float(tint @ lum)
    sun_part = np.minimum(share * target * tint, 0.9 * target)  # reflected at the facing plane
    sky_part = target - sun_part
    strength = float(rng.uniform(*SKY_GRADIENT))
    sky_tint = 1.0 + rng.uniform(-SKY_TINT, SKY_TINT, 3)
    d = rng.normal(size=3)
    d /= float(np.linalg.norm(d))
    k = strength * sky_tint  # per-channel relative gradient, < 1: the sky is never negative
    mean = sky_part / (1.0 + 2.0 / 3.0 * k * d[2])
    return {
        "sun": {
            "direction": sun_dir.tolist(),
            "irradiance_rgb": (sun_part * math.pi / math.cos(theta)).tolist(),
            "share": share,
            "angle_from_view_axis_deg": math.degrees(theta),
        },
        "world": {"mean": mean.tolist(), "gradient": (k * mean).tolist(), "direction": d.tolist()},
    }


def _texture_for_blender(plane: Plane, proj_w: float, proj_h: float) -> np.ndarray:
    """H x W x 4 float32 straight-alpha linear RGBA, rows bottom-up (Blender's image order),
    prepared (sRGB -> linear, antialiased downscale) exactly as the thin-lens engine does."""
    with torch.no_grad():
        t = _prepare_texture(plane, proj_w, proj_h, torch.device("cpu"))[0]
    premul = t.permute(1, 2, 0).numpy().astype(np.float32)
    alpha = premul[..., 3:4]
    rgb = np.where(alpha > 0, premul[..., :3] / np.maximum(alpha, 1e-12), 0.0)
    out = np.concatenate([np.clip(rgb, 0.0, None), alpha], axis=-1).astype(np.float32)
    return np.ascontiguousarray(out[::-1])


def write_job(jobdir: Path, scene: Scene, *, margin: int, light: dict, samples: int, seed: int,
              threads: int, denoise: bool) -> dict:
    """Write ``job.json`` and the textures for ``blender_child.py``; return the job."""
    cam = scene.camera
    f_px = cam.focal_px
    canvas = cam.resolution + 2 * margin
    planes = []
    for j, plane in enumerate(scene.planes):
        if plane.fill_view:
            half = canvas / 2.0 * plane.distance_m / f_px
            hw = hh = half
            centre = np.array([0.0, 0.0, plane.distance_m])
        else:
            hw, hh = plane.half_size_m
            centre = np.asarray(plane.center_m, dtype=np.float64)
        z = float(centre[2])
        tex = _texture_for_blender(plane, 2 * hw * f_px / z, 2 * hh * f_px / z)
        name = f"tex_{j:02d}.npy"
        np.save(jobdir / name, tex)
        planes.append({
            "name": plane.name,
            "half_size_m": [float(hw), float(hh)],
            "matrix_world": plane_matrix(plane, centre),
            "texture": name,
            "opaque": bool(plane.fill_view),
            "pass_index": j + 1,
        })
    renders = [
        {"name": f"frame_{k:02d}", "dof": True, "focus_m": float(s),
         "fstop": blender_fstop(cam.fnumber, cam.focal_mm, float(s))}
        for k, s in enumerate(scene.focus_distances_m)
    ]
    renders.append({"name": "gt", "dof": False})
    job = {
        "format": JOB_FORMAT,
        "resolution": cam.resolution,
        "camera": {"focal_mm": cam.focal_mm, "sensor_width_mm": cam.sensor_width_mm},
        "planes": planes,
        "world": light["world"],
        "sun": light["sun"],
        "renders": renders,
        "cycles": {"samples": int(samples), "seed": int(seed), "threads": int(threads), "denoise": bool(denoise)},
    }
    (jobdir / "job.json").write_text(json.dumps(job, indent=1))
    return job


def run_child(jobdir: Path, python: str) -> dict:
    """Run ``blender_child.py`` on ``jobdir``; return its timings."""
    try:
        proc = subprocess.run(
            [python, str(CHILD_SCRIPT), str(jobdir)],
            capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False, cwd=jobdir,
        )
    except OSError as exc:
        raise missing_bpy_error(python, f"{type(exc).__name__}: {exc}") from None
    except subprocess.TimeoutExpired:
        raise BlenderRenderError(
            f"Blender did not finish a sample in {CHILD_TIMEOUT_S:.0f} s",
            fix="lower --resolution or --cycles-samples",
        ) from None
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        if any("No module named 'bpy'" in ln for ln in err):
            raise missing_bpy_error(python, "ModuleNotFoundError: No module named 'bpy'")
        tail = "\n".join((err or proc.stdout.strip().splitlines())[-8:])
        raise BlenderRenderError(
            "Blender failed to render a sample",
            expected="exit code 0 from blender_child.py",
            actual=f"exit code {proc.returncode}: {tail}",
            fix="rerun with --debug, or check the Blender Python with: python -c 'import bpy'",
        )
    return json.loads((jobdir / "timings.json").read_text())


# --------------------------------------------------------------------------------------------
# geometry: depth, masks, mattes, CoC tables (the same definitions as the thin-lens engine)


def scene_geometry(scene: Scene) -> dict:
    """Depth, sharpest-frame masks, mattes and CoC tables of ``scene`` from its geometry.

    Returns ``depth`` (R x R float32 metres), ``masks`` (K x R x R bool), ``mattes``
    (P x R x R float32 in [0, 1]), ``coc_px`` (K x P), ``coc_range_px`` (K x P x 2), ``margin``.
    The visible surface at a pixel is the nearest plane whose alpha there is >= 0.5, exactly as
    in ``thinlens.render_scene``.
    """
    cam = scene.camera
    res = cam.resolution
    focus = [float(s) for s in scene.focus_distances_m]
    margin = scene_margin(scene)
    canvas = res + 2 * margin
    dev = torch.device("cpu")
    n_frames, n_planes = len(focus), len(scene.planes)
    coc = np.zeros((n_frames, n_planes))
    coc_rng = np.zeros((n_frames, n_planes, 2))
    with torch.no_grad():
        depth = torch.full((res, res), float("inf"))
        mattes = torch.zeros((n_planes, res, res))
        for j in reversed(range(n_planes)):
            plane = scene.planes[j]
            for k, s in enumerate(focus):
                coc[k, j] = float(cam.coc_px(s, plane.distance_m))
            layer = rasterize_plane(plane, cam, canvas, margin, dev)
            if layer is None:
                coc_rng[:, j] = coc[:, j : j + 1]
                continue
            lo, hi = layer.inv_range
            for k, s in enumerate(focus):
                a = cam.coc_scale_px(s)
                ends = [a * abs(1.0 / s - lo), a * abs(1.0 / s - hi)]
                coc_rng[k, j] = (0.0 if lo <= 1.0 / s <= hi else min(ends), max(ends))
            oy, ox = layer.y0 - margin, layer.x0 - margin
            _paste(mattes[j], layer.alpha, oy, ox)
            z_img = torch.full((res, res), float("inf"))
            _paste(z_img, 1.0 / layer.inv_depth, oy, ox)
            depth = torch.where(mattes[j] >= 0.5, z_img, depth)
        depth = torch.where(torch.isinf(depth), torch.full_like(depth, max(focus)), depth)
        inv = 1.0 / depth.double()
        per_frame = torch.stack([(inv - 1.0 / s).abs() * cam.coc_scale_px(s) for s in focus])
        best = torch.argmin(per_frame, dim=0)  # first frame wins ties
        masks = torch.stack([best == k for k in range(n_frames)])
    return {
        "depth": depth.numpy().astype(np.float32),
        "masks": masks.numpy(),
        "mattes": mattes.numpy(),
        "coc_px": coc,
        "coc_range_px": coc_rng,
        "margin": margin,
    }


def _paste(dst, src, y0: int, x0: int) -> None:
    h, w = dst.shape
    sy0, sx0 = max(0, -y0), max(0, -x0)
    dy0, dx0 = max(0, y0), max(0, x0)
    dy1, dx1 = min(h, y0 + src.shape[0]), min(w, x0 + src.shape[1])
    if dy1 > dy0 and dx1 > dx0:
        dst[dy0:dy1, dx0:dx1] = src[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]


# --------------------------------------------------------------------------------------------
# the engine


def blender_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([int(seed), int(index), LIGHT_STREAM]))


def render_blender_scene(
    scene: Scene,
    *,
    seed: int = 0,
    index: int = 0,
    samples: int = 64,
    denoise: bool = False,
    threads: int = 1,
    python: str | None = None,
    keep_job: Path | None = None,
):
    """Render every frame of ``scene`` and its all-in-focus GT with Cycles.

    Returns ``(RenderResult, info)``: the result holds frames (K x R x R x 3) and gt
    (R x R x 3), float32 sRGB in [0, 1], plus depth, masks, mattes and CoC tables from the
    geometry (see ``scene_geometry``); ``info`` holds the lighting, the Cycles settings and the
    bpy version (for meta.json) and ``timings`` (seconds; not for meta.json). ``seed`` and
    ``index`` choose the lighting and Cycles' sampling seed. ``keep_job`` copies the job folder
    there (for debugging).
    """
    py = blender_python(python)
    geo = scene_geometry(scene)
    rng = blender_rng(seed, index)
    light = lighting(scene.gains, rng)
    cycles_seed = int(rng.integers(0, 2**31 - 1))
    started = time.perf_counter()
    jobdir = Path(tempfile.mkdtemp(prefix="focusstack-blender-"))
    try:
        job = write_job(jobdir, scene, margin=geo["margin"], light=light, samples=samples,
                        seed=cycles_seed, threads=threads, denoise=denoise)
        timings = run_child(jobdir, py)
        images = {}
        for item in job["renders"]:
            lin = np.load(jobdir / f"{item['name']}.npy")
            srgb = linear_to_srgb(torch.from_numpy(np.ascontiguousarray(lin)))
            images[item["name"]] = srgb.numpy().astype(np.float32)
        if keep_job is not None:
            shutil.copytree(jobdir, keep_job, dirs_exist_ok=True)
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)
    n = len(scene.focus_distances_m)
    result = RenderResult(
        frames=np.stack([images[f"frame_{k:02d}"] for k in range(n)]),
        gt=images["gt"],
        depth=geo["depth"],
        masks=geo["masks"],
        mattes=geo["mattes"],
        coc_px=geo["coc_px"],
        coc_range_px=geo["coc_range_px"],
        margin=geo["margin"],
    )
    timings["total_seconds"] = time.perf_counter() - started
    info = {
        "bpy": timings.get("bpy"),
        "cycles": {"samples": int(samples), "seed": cycles_seed, "denoise": bool(denoise),
                   "pixel_filter": "box 1 px", "adaptive_sampling": False},
        "fstop_per_frame": [r["fstop"] for r in job["renders"] if r["dof"]],
        "lighting": light,
        "timings": timings,
    }
    return result, info
