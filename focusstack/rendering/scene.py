"""What a sample is made of: a thin-lens camera, textured planes, focus distances and lighting.

Camera coordinates: X to the right, Y down, Z forward (the distance from the lens), in metres.
Planes are listed near to far; the last one is the background, which fills the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A thin-lens camera with a square sensor of ``resolution`` x ``resolution`` pixels."""

    focal_mm: float
    fnumber: float
    sensor_width_mm: float
    resolution: int

    @property
    def pitch_mm(self) -> float:
        """Pixel pitch on the sensor (mm per pixel)."""
        return self.sensor_width_mm / self.resolution

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (the pinhole projection scale)."""
        return self.focal_mm / self.pitch_mm

    @property
    def aperture_mm(self) -> float:
        return self.focal_mm / self.fnumber

    def coc_scale_px(self, focus_m: float) -> float:
        """``A`` such that the CoC diameter in px is ``A * |1/focus_m - 1/depth_m|``.

        Thin lens: ``CoC_mm = f^2 / (N (S - f)) * |Z - S| / Z`` with ``f, S, Z`` in mm, which is
        ``f^2 S / (N (S - f)) * |1/S - 1/Z|``; dividing by the pixel pitch gives pixels.
        """
        f = self.focal_mm
        s = focus_m * 1000.0
        return f * f * s / (self.fnumber * (s - f)) / 1000.0 / self.pitch_mm

    def coc_px(self, focus_m: float, depth_m: float | np.ndarray) -> float | np.ndarray:
        """Circle-of-confusion diameter (px) of a point at ``depth_m`` when focused at ``focus_m``."""
        return self.coc_scale_px(focus_m) * np.abs(1.0 / focus_m - 1.0 / np.asarray(depth_m, dtype=np.float64))


@dataclass
class Plane:
    """A textured rectangle. ``texture`` is H x W x 4 (RGB + straight alpha), sRGB-encoded, uint8,
    uint16 or float in [0, 1]; texture row 0 is the plane's top edge (-Y), column 0 its left (-X).

    ``fill_view`` planes (the background) ignore ``center_m``'s X/Y and ``half_size_m`` and are
    sized by the renderer to cover the whole canvas at their distance, fronto-parallel.
    """

    name: str
    center_m: tuple[float, float, float]
    half_size_m: tuple[float, float]
    texture: np.ndarray
    rotation_deg: float = 0.0
    tilt_x_deg: float = 0.0
    tilt_y_deg: float = 0.0
    fill_view: bool = False
    source: str = ""
    #: Everything else worth recording in meta.json (scale, crop, procedural seed ...).
    extra: dict = field(default_factory=dict)

    @property
    def distance_m(self) -> float:
        return float(self.center_m[2])

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In-plane unit axes ``e1`` (texture right), ``e2`` (texture down) and the normal."""
        if self.fill_view:
            return np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
        rz = math.radians(self.rotation_deg)
        rx = math.radians(self.tilt_x_deg)
        ry = math.radians(self.tilt_y_deg)
        rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
        rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
        rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
        rot = rot_y @ rot_x @ rot_z
        return rot[:, 0], rot[:, 1], rot[:, 2]

    def corners_m(self) -> np.ndarray:
        """4 x 3 corner positions (only for planes that are not ``fill_view``)."""
        e1, e2, _ = self.axes()
        c = np.asarray(self.center_m, dtype=np.float64)
        hw, hh = self.half_size_m
        return np.stack([c + sx * hw * e1 + sy * hh * e2 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])

    def depth_range_m(self) -> tuple[float, float]:
        if self.fill_view:
            return self.distance_m, self.distance_m
        z = self.corners_m()[:, 2]
        return float(z.min()), float(z.max())


@dataclass
class Scene:
    camera: Camera
    #: Near to far; the last plane is usually the ``fill_view`` background.
    planes: list[Plane]
    #: One focus distance per frame (metres).
    focus_distances_m: list[float]
    #: Linear-light RGB gains (exposure x white balance x tint), applied to frames and GT alike.
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
