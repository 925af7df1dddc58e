"""Defaults of ``focusstack render-dataset``, in one frozen dataclass. The CLI help reads them here.

Units: distances in metres, focal length and sensor width in millimetres, angles in degrees,
resolution in pixels (square frames).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from focusstack.errors import ConfigError

RENDER_ENGINES = ("thinlens", "blender")
RENDER_DEVICES = ("cpu", "cuda")
#: Most frames (planes, background included) one sample may have.
MAX_RENDER_FRAMES = 16
#: Fields that do not change what a sample looks like (ignored when a run is resumed).
NON_CONTENT_FIELDS = ("samples", "workers", "threads", "png_compression", "device", "ray", "ray_address", "show_progress",
                      "blender_python")
#: Fields used by ``--engine blender`` only (left out of the JSON of other engines' runs, so that
#: their manifests are the same as before these fields existed).
BLENDER_FIELDS = ("cycles_samples", "cycles_denoise", "blender_python")


def _bad(name: str, expected: str, actual: Any, fix: str | None = None) -> ConfigError:
    return ConfigError(f"bad value for {name}", expected=expected, actual=repr(actual), fix=fix)


@dataclass(frozen=True)
class RenderConfig:
    """Everything one ``render-dataset`` run needs besides its output folder.

    Scene sampling follows VAEEDOF's Algorithm 1 (MattingMFIF): ``frames - 1`` subject planes at
    random distances in ``[subject_distance_min_m, subject_distance_max_m]``, one background plane
    at ``background_distance_m`` filling the view, a thin-lens camera with a random focal length
    and f-number, one frame focused on each plane plus an all-in-focus ground truth.
    """

    samples: int = 1
    resolution: int = 4096
    seed: int = 0
    engine: str = "thinlens"
    subjects: Path | None = None
    backgrounds: Path | None = None
    workers: int = 1
    #: Torch threads per process (the main one with ``workers == 1``, each worker otherwise).
    #: 1 is fastest on a busy machine; parallelise with ``workers`` instead.
    threads: int = 1
    #: Frames per sample = subject planes + 1 (the background). Drawn per sample in [min, max].
    frames_min: int = 6
    frames_max: int = 6
    #: f-number range, sampled log-uniformly (f-stops are a geometric scale).
    fstop_min: float = 2.8
    fstop_max: float = 11.0
    focal_min_mm: float = 90.0
    focal_max_mm: float = 120.0
    sensor_width_mm: float = 36.0
    subject_distance_min_m: float = 1.0
    subject_distance_max_m: float = 9.5
    background_distance_m: float = 10.0
    #: Smallest distance between two subject planes (keeps the layers in a clear depth order).
    min_plane_gap_m: float = 0.2
    #: Projected subject height as a fraction of the frame height.
    subject_scale_min: float = 0.25
    subject_scale_max: float = 0.7
    #: In-plane rotation is uniform in +-rotation_max_deg; out-of-plane tilt in +-tilt_max_deg
    #: (reduced per plane so that a tilted plane never reaches its neighbours' depths).
    rotation_max_deg: float = 30.0
    tilt_max_deg: float = 15.0
    #: Lighting per sample: exposure uniform in +-exposure_ev stops, white balance (red/blue
    #: gain) in +-white_balance, tint (green/magenta gain) in +-tint.
    exposure_ev: float = 0.5
    white_balance: float = 0.15
    tint: float = 0.05
    #: Fraction of samples (and of source images) reserved for validation.
    val_fraction: float = 0.1
    #: Depth slicing of tilted planes: the most CoC change (px) inside one slice.
    coc_tolerance_px: float = 1.0
    #: zlib level of the PNG files, 0-9 (0: no compression, ~20% larger, fastest; pixels are
    #: the same at every level).
    png_compression: int = 1
    device: str = "cpu"
    ray: bool = False
    ray_address: str | None = None
    show_progress: bool = True
    #: ``--engine blender``: Cycles samples per pixel of every frame and of the GT (a fixed count,
    #: no adaptive sampling). Defocused regions need the most; 64 leaves faint grain at 256 px.
    cycles_samples: int = 64
    #: ``--engine blender``: denoise every render with OpenImageDenoise (smoother defocus at few
    #: samples, but it may soften fine in-focus texture).
    cycles_denoise: bool = False
    #: ``--engine blender``: the Python that imports ``bpy`` (bpy 5.0 needs Python 3.11 and
    #: numpy < 2, so it may live in its own environment). Default: ``$FOCUSSTACK_BLENDER_PYTHON``,
    #: else the running Python.
    blender_python: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in RENDER_ENGINES:
            raise _bad("--engine", " | ".join(RENDER_ENGINES), self.engine, "pass --engine thinlens")
        if self.device not in RENDER_DEVICES:
            raise _bad("--device", " | ".join(RENDER_DEVICES), self.device, "pass --device cpu")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise _bad("--samples", "an integer >= 1", self.samples)
        if self.resolution < 64 or self.resolution > 16384 or self.resolution % 8:
            raise _bad(
                "--resolution",
                "a multiple of 8 between 64 and 16384",
                self.resolution,
                "pass e.g. --resolution 512, 1024 or 4096",
            )
        if self.seed < 0:
            raise _bad("--seed", "an integer >= 0", self.seed)
        if self.workers < 1:
            raise _bad("--workers", "an integer >= 1", self.workers)
        if not 0 <= self.png_compression <= 9:
            raise _bad("--png-compression", "an integer from 0 to 9", self.png_compression)
        if not 1 <= self.threads <= 256:
            raise _bad("--threads", "an integer from 1 to 256", self.threads)
        if not 2 <= self.frames_min <= self.frames_max <= MAX_RENDER_FRAMES:
            raise ConfigError(
                "bad frame counts",
                expected=f"2 <= --frames-min <= --frames-max <= {MAX_RENDER_FRAMES} "
                "(frames = subject planes + 1 background)",
                actual=f"--frames-min {self.frames_min} --frames-max {self.frames_max}",
                fix="pass e.g. --frames-min 2 --frames-max 6",
            )
        if not 0.0 < self.fstop_min <= self.fstop_max <= 64.0:
            raise ConfigError(
                "bad f-stop range",
                expected="0 < --fstop-min <= --fstop-max <= 64",
                actual=f"--fstop-min {self.fstop_min} --fstop-max {self.fstop_max}",
                fix="pass e.g. --fstop-min 4 --fstop-max 16",
            )
        if not 1.0 <= self.focal_min_mm <= self.focal_max_mm <= 2000.0:
            raise _bad("focal length range", "1 <= min <= max <= 2000 mm",
                       (self.focal_min_mm, self.focal_max_mm))
        if not 1.0 <= self.sensor_width_mm <= 200.0:
            raise _bad("sensor width", "1 to 200 mm", self.sensor_width_mm)
        near_limit = 2.0 * self.focal_max_mm / 1000.0
        if not (near_limit < self.subject_distance_min_m <= self.subject_distance_max_m
                < self.background_distance_m):
            raise ConfigError(
                "bad plane distances",
                expected=f"{near_limit:g} m (2 focal lengths) < subject min <= subject max "
                "< background distance",
                actual=f"{self.subject_distance_min_m} / {self.subject_distance_max_m} / "
                f"{self.background_distance_m}",
            )
        if self.min_plane_gap_m < 0 or (
            (self.frames_max - 2) * self.min_plane_gap_m
            > self.subject_distance_max_m - self.subject_distance_min_m
        ):
            raise _bad("min plane gap", "a gap that lets frames_max - 1 planes fit in the range",
                       self.min_plane_gap_m)
        if not 0.01 <= self.subject_scale_min <= self.subject_scale_max <= 2.0:
            raise _bad("subject scale range", "0.01 <= min <= max <= 2",
                       (self.subject_scale_min, self.subject_scale_max))
        if not 0 <= self.rotation_max_deg <= 180:
            raise _bad("rotation", "0 to 180 degrees", self.rotation_max_deg)
        if not 0 <= self.tilt_max_deg <= 60:
            raise _bad("tilt", "0 to 60 degrees", self.tilt_max_deg)
        if not (0 <= self.exposure_ev <= 4 and 0 <= self.white_balance < 1 and 0 <= self.tint < 1):
            raise _bad("lighting", "0 <= exposure_ev <= 4, 0 <= white_balance, tint < 1",
                       (self.exposure_ev, self.white_balance, self.tint))
        if not 0.0 <= self.val_fraction < 1.0 or math.isnan(self.val_fraction):
            raise _bad("--val-fraction", "0 <= F < 1", self.val_fraction, "pass e.g. --val-fraction 0.1")
        if not 0.05 <= self.coc_tolerance_px <= 100:
            raise _bad("coc tolerance", "0.05 to 100 px", self.coc_tolerance_px)
        for name in ("subjects", "backgrounds"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.cycles_samples, int) or not 1 <= self.cycles_samples <= 65536:
            raise _bad("--cycles-samples", "an integer from 1 to 65536", self.cycles_samples,
                       "pass e.g. --cycles-samples 64")
        if self.blender_python is not None and not isinstance(self.blender_python, str):
            object.__setattr__(self, "blender_python", str(self.blender_python))
        if self.ray_address is not None and not self.ray:
            object.__setattr__(self, "ray", True)

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON values (paths as absolute strings)."""
        out = asdict(self)
        if self.engine != "blender":
            for name in BLENDER_FIELDS:
                del out[name]
        for name in ("subjects", "backgrounds"):
            if out[name] is not None:
                out[name] = str(Path(out[name]).resolve())
        return out

    def content_key(self) -> dict[str, Any]:
        """The fields that decide what samples look like (compared when a run is resumed)."""
        data = self.to_json()
        return {k: v for k, v in data.items() if k not in NON_CONTENT_FIELDS}


def default_of(name: str) -> Any:
    """Default value of one RenderConfig field (for CLI help)."""
    for f in fields(RenderConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
