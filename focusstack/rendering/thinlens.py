"""The ``thinlens`` engine: layered defocus rendering in linear light with PyTorch.

How one sample is rendered (``render_scene``):

1. Every plane is ray-cast through a pinhole at the lens centre into a *canvas* that is the
   frame plus a margin as wide as the largest blur radius (so blur near the frame edges sees
   real content, as in a camera). The texture (sRGB) is converted to linear light, its colour
   premultiplied by alpha, downscaled with antialiasing to about the projected size and sampled
   bilinearly. Each plane gives a premultiplied RGBA layer and an exact per-pixel depth.
2. For a frame focused at ``S``, the circle of confusion of a point at depth ``Z`` is the thin-lens
   ``CoC = f^2 / (N (S - f)) * |Z - S| / Z`` (mm on the sensor; divided by the pixel pitch for px).
   It is linear in ``1/Z``, so a tilted plane is cut into a few slices evenly spaced in ``1/Z``
   (with linear "hat" weights, so slices blend smoothly), fine enough that the CoC changes by at
   most ``coc_tolerance_px`` within a slice in any frame.
3. Each slice is convolved with an antialiased disc (pillbox) of its CoC diameter by FFT; the
   slice's FFT is computed once and reused for all frames. Discs wider than 48 px run on a copy
   box-downscaled by 2, 4 or 8 (the disc stays >= 24 px wide there) and upscaled bilinearly.
   Colour and alpha are blurred together (premultiplied), so a blurred foreground spreads over
   the sharp background behind it (the defocus spread effect).
4. Layers are composited back to front with the premultiplied "over" operator, lighting gains are
   applied, values are clipped to [0, 1] and converted back to sRGB.

The ground truth is the same composite without blur. The depth map, the "sharpest frame" masks
and the mattes all use the GT geometry: the visible surface at a pixel is the nearest layer whose
alpha there is at least 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from focusstack.rendering.scene import Camera, Plane, Scene

#: A disc of diameter at most this many px is the identity (all weight on the centre pixel).
NO_BLUR_PX = 1.0
#: Most depth slices per plane.
MAX_SLICES = 24
#: Large blurs run on a copy downscaled by up to this factor (a power of 2) ...
MAX_BLUR_SCALE = 8
#: ... keeping the downscaled disc at least this many px wide.
MIN_SCALED_DIAMETER = 24.0


# --------------------------------------------------------------------------------------------
# colour


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=1e-12) ** (1.0 / 2.4) - 0.055)


_LUTS: dict = {}


def _srgb_lut(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _LUTS:
        _LUTS[key] = srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255.0).to(torch.float32).to(device)
    return _LUTS[key]


def _texture_to_float(tex: np.ndarray) -> np.ndarray:
    if tex.dtype == np.uint8:
        return tex.astype(np.float32) / 255.0
    if tex.dtype == np.uint16:
        return tex.astype(np.float32) / 65535.0
    return tex.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# kernels


def disc_kernel(diameter_px: float) -> np.ndarray:
    """Antialiased disc (pillbox) of the given diameter, normalised to sum 1, float64.

    A pixel's weight is the fraction of a 1-px ramp centred on the rim that it lies inside, so
    the kernel's area (sum / max) is ``pi (d/2)^2`` to within a fraction of a pixel and grows
    continuously with ``d``. Diameters up to 1 px give the identity.
    """
    radius = max(float(diameter_px), 0.0) / 2.0
    half = int(math.ceil(radius + 0.5))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    w = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)
    return w / w.sum()


def kernel_radius(diameter_px: float) -> int:
    return 0 if diameter_px <= NO_BLUR_PX else int(math.ceil(diameter_px / 2.0 + 0.5))


def fast_size(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _disc_fft(diameter_px: float, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """rfft2 of the disc kernel placed with its centre at the origin of a ``size`` array."""
    k = disc_kernel(diameter_px)
    r = k.shape[0] // 2
    h, w = size
    full = np.zeros((h, w), dtype=np.float32)
    ys = (np.arange(-r, r + 1) % h)[:, None]
    xs = (np.arange(-r, r + 1) % w)[None, :]
    np.add.at(full, (ys, xs), k.astype(np.float32))
    return torch.fft.rfft2(torch.from_numpy(full).to(device))


# --------------------------------------------------------------------------------------------
# layers


@dataclass
class Layer:
    """One rasterised plane, cropped to its bounding box on the canvas."""

    plane: Plane
    y0: int
    x0: int
    #: 4 x h x w premultiplied linear RGBA (3 x h x w for an opaque fill_view plane).
    rgba: torch.Tensor
    #: h x w inverse depth (1/m) of the plane at every pixel of the box (also outside alpha).
    inv_depth: torch.Tensor
    opaque: bool
    #: Inverse depth range over the pixels the layer covers.
    inv_range: tuple[float, float] = (0.0, 0.0)

    @property
    def alpha(self) -> torch.Tensor:
        if self.opaque:
            return torch.ones_like(self.rgba[0])
        return self.rgba[3]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgba.shape[-2]), int(self.rgba.shape[-1])


def _prepare_texture(
    plane: Plane, proj_w_px: float, proj_h_px: float, device: torch.device
) -> torch.Tensor:
    """1 x 4 x th x tw premultiplied linear RGBA, downscaled (antialiased) to ~ the projected size."""
    tex = plane.texture
    if tex.ndim != 3 or tex.shape[2] not in (3, 4):
        raise ValueError(f"texture of plane {plane.name} must be H x W x 3|4, got {tex.shape}")
    if tex.dtype == np.uint8:  # exact and fast: a 256-entry table
        arr = np.ascontiguousarray(tex)
        raw = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).to(device)
        rgb = _srgb_lut(device)[raw[..., :3].long()].permute(2, 0, 1)
        a = raw[..., 3].to(torch.float32) / 255.0 if tex.shape[2] == 4 else None
    else:
        t = torch.from_numpy(np.ascontiguousarray(_texture_to_float(tex))).to(device).permute(2, 0, 1)
        rgb = srgb_to_linear(t[:3])
        a = t[3].clamp(0.0, 1.0) if tex.shape[2] == 4 else None
    if a is not None:
        t = torch.cat([rgb * a, a[None]], dim=0)
    else:
        t = torch.cat([rgb, torch.ones_like(rgb[:1])], dim=0)
    t = t[None]
    th, tw = t.shape[-2:]
    k = min(1.0, 1.25 * max(proj_w_px / tw, proj_h_px / th))
    if k < 0.999:
        size = (max(2, int(round(th * k))), max(2, int(round(tw * k))))
        t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return t


def rasterize_plane(
    plane: Plane, camera: Camera, canvas: int, margin: int, device: torch.device
) -> Layer | None:
    """Ray-cast ``plane`` into the canvas. None when it covers no canvas pixel."""
    f_px = camera.focal_px
    centre = margin + camera.resolution / 2.0  # principal point, canvas px (pixel centres at +0.5)
    e1, e2, n = plane.axes()
    c = np.asarray(plane.center_m, dtype=np.float64)
    if plane.fill_view:
        half = canvas / 2.0 * c[2] / f_px
        hw = hh = half * (1.0 + 1e-9)
        c = np.array([0.0, 0.0, c[2]])
        # the canvas centre is the principal point, so the plane centred on the axis covers it
        y0, x0, y1, x1 = 0, 0, canvas, canvas
    else:
        hw, hh = plane.half_size_m
        corners = plane.corners_m()
        if np.any(corners[:, 2] <= camera.focal_mm / 1000.0):
            raise ValueError(f"plane {plane.name} reaches behind the lens")
        px = corners[:, 0] / corners[:, 2] * f_px + centre
        py = corners[:, 1] / corners[:, 2] * f_px + centre
        x0 = max(0, int(math.floor(px.min())) - 1)
        x1 = min(canvas, int(math.ceil(px.max())) + 1)
        y0 = max(0, int(math.floor(py.min())) - 1)
        y1 = min(canvas, int(math.ceil(py.max())) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
    z_c = c[2]
    tex = _prepare_texture(plane, 2 * hw * f_px / z_c, 2 * hh * f_px / z_c, device)

    dt = torch.float64  # geometry in double: cheap, and exact enough at 16k px
    xs = torch.arange(x0, x1, device=device, dtype=dt) + 0.5 - centre
    ys = torch.arange(y0, y1, device=device, dtype=dt) + 0.5 - centre
    # ray d = (x, y, f_px); t = (C.n) / (d.n); P = t d; local coords (P - C).e / half-size
    def dot_grid(v: np.ndarray) -> torch.Tensor:
        return ys[:, None] * float(v[1]) + xs[None, :] * float(v[0]) + f_px * float(v[2])

    dn = dot_grid(n)
    t = float(c @ n) / dn
    s = (t * dot_grid(e1) - float(c @ e1)) / hw
    q = (t * dot_grid(e2) - float(c @ e2)) / hh
    inv_depth = 1.0 / (t * f_px)
    grid = torch.stack([s, q], dim=-1)[None].to(torch.float32)
    mode = "border" if plane.fill_view else "zeros"
    rgba = F.grid_sample(tex, grid, mode="bilinear", padding_mode=mode, align_corners=False)[0]
    if plane.fill_view:
        layer = Layer(plane, y0, x0, rgba[:3].contiguous(), inv_depth.to(torch.float32), True)
    else:
        rgba[3].clamp_(0.0, 1.0)
        layer = Layer(plane, y0, x0, rgba.contiguous(), inv_depth.to(torch.float32), False)
    covered = inv_depth[layer.alpha > 0] if not layer.opaque else inv_depth
    if covered.numel() == 0:
        return None
    layer.inv_range = (float(covered.min()), float(covered.max()))
    return layer


# --------------------------------------------------------------------------------------------
# blur


def _slice_centres(layer: Layer, scales: list[float], tolerance_px: float) -> list[float]:
    lo, hi = layer.inv_range
    span = (hi - lo) * max(scales)
    count = 1 if span <= tolerance_px else min(MAX_SLICES, int(math.ceil(span / tolerance_px)) + 1)
    if count == 1:
        return [0.5 * (lo + hi)]
    return list(np.linspace(lo, hi, count))


def _slice_weights(layer: Layer, centres: list[float]) -> list[torch.Tensor]:
    if len(centres) == 1:
        return [torch.ones_like(layer.inv_depth)]
    step = centres[1] - centres[0]
    x = ((layer.inv_depth - centres[0]) / step).clamp(0.0, len(centres) - 1.0)
    return [(1.0 - (x - i).abs()).clamp(min=0.0) for i in range(len(centres))]


def blur_scale(diameter_px: float) -> int:
    """Downscale factor (1, 2, 4 or 8) for a blur of this diameter.

    A large disc removes all detail finer than a few px, so it is applied on a box-downscaled
    copy (the kernel stays at least ``MIN_SCALED_DIAMETER`` px wide there) and the result is
    upscaled bilinearly: the added softness (about the factor, in px) is small against the blur
    (at most 1/24 of its diameter) while the FFT work drops by the factor squared.
    """
    s = 1
    while s < MAX_BLUR_SCALE and diameter_px / (2 * s) >= MIN_SCALED_DIAMETER:
        s *= 2
    return s


def _blur_slice(
    padded: torch.Tensor,
    diameter_px: float,
    spectra: dict,
    kernel_cache: dict,
) -> torch.Tensor:
    """``padded`` (C x H x W, H and W multiples of ``MAX_BLUR_SCALE``) convolved with the disc."""
    scale = blur_scale(diameter_px)
    _, hh, ww = padded.shape
    hs, ws = hh // scale, ww // scale
    if scale not in spectra:
        small = padded if scale == 1 else F.avg_pool2d(padded[None], scale)[0]
        size = (fast_size(hs), fast_size(ws))  # zero padding beyond: linear convolution
        spectra[scale] = (torch.fft.rfft2(small, s=size), size)
    spectrum, size = spectra[scale]
    d = diameter_px / scale
    key = (round(d, 6), size)
    kf = kernel_cache.get(key)
    if kf is None:
        kf = _disc_fft(d, size, padded.device)
        kernel_cache[key] = kf
    out = torch.fft.irfft2(spectrum * kf, s=size)[:, :hs, :ws]
    if scale > 1:
        out = F.interpolate(out[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
    return out


def blur_layer_frames(
    layer: Layer,
    camera: Camera,
    focus: list[float],
    tolerance_px: float,
    emit,
    kernel_cache: dict | None = None,
) -> None:
    """Blur the layer as seen focused at each of ``focus`` and call ``emit(k, tensor, y, x)``
    once per frame ``k`` with the C x H x W premultiplied result at canvas offset (y, x).

    A layer in one depth slice (any fronto-parallel plane) is emitted frame by frame, so only one
    blurred copy exists at a time. A tilted layer is processed slice by slice (each slice's
    spectra are reused for every frame and freed before the next), accumulating one copy per
    frame.
    """
    kernel_cache = {} if kernel_cache is None else kernel_cache
    scales = [camera.coc_scale_px(s) for s in focus]
    centres = _slice_centres(layer, scales, tolerance_px)
    weights = _slice_weights(layer, centres)
    h, w = layer.shape
    diam = [[a * abs(1.0 / s - c) for a, s in zip(scales, focus)] for c in centres]
    if layer.opaque:  # fill_view: the canvas margin already holds the content the blur needs
        pad, hh, ww = 0, h, w
    else:
        pad = max(kernel_radius(d) for row in diam for d in row)
        m = MAX_BLUR_SCALE
        hh = -(-(h + 2 * pad) // m) * m
        ww = -(-(w + 2 * pad) // m) * m
    y, x = layer.y0 - pad, layer.x0 - pad
    single = len(centres) == 1
    outs: list[torch.Tensor | None] = [None] * len(focus)
    for weight, row in zip(weights, diam):
        weighted = layer.rgba if single else layer.rgba * weight
        padded = None
        spectra: dict = {}
        for k, d in enumerate(row):
            if d <= NO_BLUR_PX:
                part = F.pad(weighted, (pad, ww - w - pad, pad, hh - h - pad)) if pad or hh != h or ww != w else weighted
            else:
                if padded is None:
                    padded = F.pad(weighted, (pad, ww - w - pad, pad, hh - h - pad))
                part = _blur_slice(padded, d, spectra, kernel_cache)
            if single:
                emit(k, part, y, x)
            elif outs[k] is None:
                outs[k] = part.clone() if part is weighted else part
            else:
                outs[k] += part
            del part
        del spectra, padded, weighted
    if not single:
        for k, out in enumerate(outs):
            emit(k, out, y, x)
            outs[k] = None


# --------------------------------------------------------------------------------------------
# compositing


def _over(acc: torch.Tensor, src: torch.Tensor, sy: int, sx: int, margin: int, opaque: bool) -> None:
    """Composite ``src`` (C x h x w at canvas offset sy, sx) over ``acc`` (3 x R x R, image region)."""
    res = acc.shape[-1]
    # image region in canvas coords: [margin, margin + res)
    iy0, ix0 = max(sy, margin), max(sx, margin)
    iy1 = min(sy + src.shape[1], margin + res)
    ix1 = min(sx + src.shape[2], margin + res)
    if iy1 <= iy0 or ix1 <= ix0:
        return
    s = src[:, iy0 - sy : iy1 - sy, ix0 - sx : ix1 - sx]
    a = acc[:, iy0 - margin : iy1 - margin, ix0 - margin : ix1 - margin]
    if opaque:
        a.copy_(s[:3])
    else:
        a.mul_(1.0 - s[3:4]).add_(s[:3])


@dataclass
class RenderResult:
    #: K x R x R x 3 float32 sRGB in [0, 1], one per focus distance, in the scene's frame order.
    frames: np.ndarray
    #: R x R x 3 float32 sRGB in [0, 1], all in focus.
    gt: np.ndarray
    #: R x R float32 metres: depth of the visible surface in the GT.
    depth: np.ndarray
    #: K x R x R bool: frame k is the sharpest at the pixel (CoC at the visible depth).
    masks: np.ndarray
    #: P x R x R float32 sharp alpha of every plane (not occluded), in plane order.
    mattes: np.ndarray
    #: K x P CoC diameter (px) at each plane's centre distance, and its range over the plane.
    coc_px: np.ndarray
    coc_range_px: np.ndarray
    margin: int
    #: Per frame, the blurred alpha of every non-opaque plane (only with keep_blurred_alpha).
    blurred_alpha: list | None = None


def scene_margin(scene: Scene) -> int:
    cam = scene.camera
    worst = 0.0
    for plane in scene.planes:
        z0, z1 = plane.depth_range_m()
        for s in scene.focus_distances_m:
            worst = max(worst, float(np.max(cam.coc_px(s, np.array([z0, z1])))))
    # + 2 px of slack, rounded up so that the canvas is a multiple of MAX_BLUR_SCALE
    return -(-(kernel_radius(worst) + 2) // (MAX_BLUR_SCALE // 2)) * (MAX_BLUR_SCALE // 2)


def effective_tolerance(coc_tolerance_px: float, resolution: int) -> float:
    """Depth-slice tolerance in px: as given up to 1024 px frames, scaled with the resolution
    above (4x at 4096 px), i.e. the same fraction of the frame."""
    return coc_tolerance_px * max(1.0, resolution / 1024.0)


def render_scene(
    scene: Scene,
    *,
    device: str | torch.device = "cpu",
    coc_tolerance_px: float = 1.0,
    keep_blurred_alpha: bool = False,
) -> RenderResult:
    """Render every frame of ``scene`` and its all-in-focus ground truth."""
    device = torch.device(device)
    cam = scene.camera
    res = cam.resolution
    focus = [float(s) for s in scene.focus_distances_m]
    margin = scene_margin(scene)
    canvas = res + 2 * margin
    tolerance = effective_tolerance(coc_tolerance_px, res)
    gains = torch.tensor(scene.gains, dtype=torch.float32, device=device)[:, None, None]

    with torch.no_grad():
        n_frames = len(focus)
        acc = [torch.zeros((3, res, res), device=device) for _ in range(n_frames)]
        gt = torch.zeros((3, res, res), device=device)
        depth = torch.full((res, res), float("inf"), device=device)
        mattes = torch.zeros((len(scene.planes), res, res), device=device)
        blurred_alpha: list | None = [[None] * len(scene.planes) for _ in range(n_frames)] if keep_blurred_alpha else None
        kernel_cache: dict = {}
        coc = np.zeros((n_frames, len(scene.planes)))
        coc_rng = np.zeros((n_frames, len(scene.planes), 2))
        for j in reversed(range(len(scene.planes))):  # back to front
            plane = scene.planes[j]
            layer = rasterize_plane(plane, cam, canvas, margin, device)
            for k, s in enumerate(focus):
                coc[k, j] = float(cam.coc_px(s, plane.distance_m))
            if layer is None:
                coc_rng[:, j] = coc[:, j : j + 1]
                continue
            lo, hi = layer.inv_range
            for k, s in enumerate(focus):
                a = cam.coc_scale_px(s)
                ends = [a * abs(1.0 / s - lo), a * abs(1.0 / s - hi)]
                inside = lo <= 1.0 / s <= hi
                coc_rng[k, j] = (0.0 if inside else min(ends), max(ends))

            def emit(k: int, blurred: torch.Tensor, by: int, bx: int, j: int = j, opaque: bool = layer.opaque) -> None:
                _over(acc[k], blurred, by, bx, margin, opaque)
                if blurred_alpha is not None and not opaque:
                    img = torch.zeros((res, res), device=device)
                    _paste(img, blurred[3], by - margin, bx - margin)
                    blurred_alpha[k][j] = img.cpu().numpy()

            blur_layer_frames(layer, cam, focus, tolerance, emit, kernel_cache)
            _over(gt, layer.rgba, layer.y0, layer.x0, margin, layer.opaque)
            # GT geometry: visible depth and mattes
            oy, ox = layer.y0 - margin, layer.x0 - margin  # offset in the image region
            _paste(mattes[j], layer.alpha, oy, ox)
            z_img = torch.full((res, res), float("inf"), device=device)
            _paste(z_img, 1.0 / layer.inv_depth, oy, ox)
            depth = torch.where(mattes[j] >= 0.5, z_img, depth)
            del layer

        # the background normally covers everything; anything left gets the farthest focus
        depth = torch.where(torch.isinf(depth), torch.full_like(depth, max(focus)), depth)
        inv = 1.0 / depth.double()
        best = torch.zeros((res, res), dtype=torch.int64, device=device)
        best_coc = torch.full((res, res), float("inf"), dtype=torch.float64, device=device)
        for k, s in enumerate(focus):  # first frame wins ties, like argmin
            c = (inv - 1.0 / s).abs_().mul_(cam.coc_scale_px(s))
            better = c < best_coc
            best.masked_fill_(better, k)
            best_coc = torch.where(better, c, best_coc)
            del c, better
        del inv, best_coc
        masks = torch.stack([best == k for k in range(n_frames)])

        frames = np.empty((n_frames, res, res, 3), dtype=np.float32)
        for k in range(n_frames):  # one frame at a time, freeing its accumulator
            frames[k] = linear_to_srgb(acc[k].mul_(gains)).permute(1, 2, 0).cpu().numpy()
            acc[k] = None
        gt_s = linear_to_srgb(gt.mul_(gains)).permute(1, 2, 0)
        return RenderResult(
            frames=frames,
            gt=gt_s.contiguous().cpu().numpy(),
            depth=depth.cpu().numpy().astype(np.float32),
            masks=masks.cpu().numpy(),
            mattes=mattes.cpu().numpy(),
            coc_px=coc,
            coc_range_px=coc_rng,
            margin=margin,
            blurred_alpha=blurred_alpha,
        )


def _paste(dst: torch.Tensor, src: torch.Tensor, y0: int, x0: int) -> None:
    """Paste a 2-D ``src`` at (y0, x0) into ``dst``, clipping at the borders."""
    h, w = dst.shape
    sy0, sx0 = max(0, -y0), max(0, -x0)
    dy0, dx0 = max(0, y0), max(0, x0)
    dy1 = min(h, y0 + src.shape[0])
    dx1 = min(w, x0 + src.shape[1])
    if dy1 <= dy0 or dx1 <= dx0:
        return
    dst[dy0:dy1, dx0:dx1] = src[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
