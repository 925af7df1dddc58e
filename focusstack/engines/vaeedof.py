"""The VAEEDOF engine (paper section 3): encode every frame with the frozen TAEF2 encoder, fuse the
(duplicated up to 7) latents with the Fusion U-Net, decode.

How the image is cut into patches (docs/algorithms.md, "Tiling"). The paper runs the whole
pipeline patch by patch (512 px, overlapping by a quarter, blended with a gradient alpha mask).
TAEF2's 1/8-resolution blocks normalise with statistics taken over their whole input, so a
patch-by-patch run gives every patch slightly different statistics: a tiled result then differs
from a one-piece result by a small per-patch colour offset (measured 36 dB, 1.4/255 on a flat
field). Here only the parts that are local run patch by patch:

1. **Canvas.** The image plus a mirrored ``margin`` on every side, padded (mirrored) on the
   bottom and right to a multiple of 64 px.
2. **Encoder, local part** (full resolution down to 1/8), per patch of the canvas, one frame
   at a time. Each patch's 1/8-resolution features are blended into the frame's feature map
   with the patch's alpha mask (averaged over 8x8 pixels).
3. **Encoder, global part** (pooled blocks), on the frame's whole feature map: image-wide
   statistics, as for a one-piece run. Only the frame's latent is kept.
4. **Fusion U-Net** on the whole latent canvas, up to ``fusion_whole_max`` latent pixels a side
   (4608 px images). Larger canvases are fused in overlapping latent patches of
   ``fusion_tile`` (512 latent px = 4096 px), blended with the same alpha masks: the U-Net's
   attention grows with the square of the area it sees, and it was trained on 512 px patches.
5. **Decoder, global part** on the whole fused latent, then the **decoder's local part** per patch,
   blended with the alpha masks into the output canvas; the margin is cut off.

Patch borders only matter in the local parts, whose receptive field is finite, and the alpha
mask's dead zone keeps each patch's outermost pixels out of the blend. Measured against a
one-piece result: 80 dB with 512 px patches on 1024 px renders; 55 dB (3.6/255 at worst) with
256 px patches on a 384 px crop (tests/test_fuse.py, tests/test_trained_fusion.py).

Memory: the 1/8-resolution maps are small (a 4096x4096 frame: 64 x 520 x 520 float32 = 69 MB of
features, 35 MB of latent), so the canvas-sized stages cost far less than the frames themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np

from focusstack.backends.base import FusionBackend
from focusstack.config import TileConfig
from focusstack.progress import Advance
from focusstack.tiling import Tile, canvas_tiles, downscale_weight, extract, plan_tiles, tile_weights

#: The autoencoder's downscale factor (pixels per latent pixel).
SCALE = 8


#: Largest latent canvas side the Fusion U-Net sees at once (4608 px images), and the latent
#: patch size beyond it.
FUSION_WHOLE_MAX = 576
FUSION_TILE = 512


class VAEEDOFEngine:
    name = "vaeedof"

    def __init__(
        self,
        backend: FusionBackend,
        tiles: TileConfig = TileConfig(),
        *,
        fusion_whole_max: int = FUSION_WHOLE_MAX,
        fusion_tile: int = FUSION_TILE,
    ) -> None:
        self.backend = backend
        self.tiles = tiles
        self.fusion_whole_max = fusion_whole_max
        self.fusion_tiles = TileConfig(tile=fusion_tile, margin=0)

    # the engine interface (focusstack.engines.base.Engine): what the backend runs on
    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def precision_reason(self) -> str:
        return getattr(self.backend, "precision_reason", "")

    @property
    def max_frames(self) -> int:
        return self.backend.frames

    @property
    def fallbacks(self) -> list[str]:
        return []

    def _fuse_latents(self, stacked: np.ndarray) -> np.ndarray:
        """``(1, F, C, h, w)`` float32 latents -> ``(1, C, h, w)``: whole, or in latent patches."""
        h8, w8 = stacked.shape[-2:]
        if max(h8, w8) <= self.fusion_whole_max:
            return self.backend.fuse(stacked)
        cfg = self.fusion_tiles
        tiles = plan_tiles(h8, w8, cfg)  # the latent canvas itself (sides multiples of 8), no margin
        out = np.zeros(stacked.shape[:1] + stacked.shape[2:], dtype=np.float32)
        for t, wt in zip(tiles, tile_weights(tiles, h8, w8, cfg)):
            part = self.backend.fuse(np.ascontiguousarray(stacked[..., t.y : t.y + t.h, t.x : t.x + t.w]))
            out[..., t.y : t.y + t.h, t.x : t.x + t.w] += part * wt
        return out

    def fuse(
        self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None, need: np.ndarray | None = None
    ) -> np.ndarray:
        """``K x (H, W, 3)`` float32 in [0, 1], 1 <= K <= 7, one size -> ``(H, W, 3)`` float32 in [0, 1].

        ``on_tile(done, total)`` reports progress (patches encoded, the global stage, patches decoded).
        ``need``: optional ``(H, W)`` bool; patches whose blend region holds no needed pixel are
        not decoded (the hybrid engine asks only for its ambiguous regions). Output pixels that
        no decoded patch covers are 0.
        """
        if not frames:
            raise ValueError("fuse needs at least one frame")
        shape = frames[0].shape
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3), got {shape}")
        for f in frames:
            if f.shape != shape:
                raise ValueError(f"all frames must share one shape, got {shape} and {f.shape}")
        if len(frames) > self.backend.frames:
            raise ValueError(f"at most {self.backend.frames} frames, got {len(frames)}")
        h, w = shape[:2]
        if need is not None and need.shape != (h, w):
            raise ValueError(f"need must be {(h, w)}, got {need.shape}")
        cfg, m, b = self.tiles, self.tiles.margin, self.backend
        ch, cw, tiles = canvas_tiles(h, w, cfg)
        total, done = 2 * len(tiles) + 1, 0

        def tick() -> None:
            nonlocal done
            done += 1
            if on_tile is not None:
                on_tile(done, total)

        # 1-3. per frame: the local encoder patch by patch -> one 1/8-resolution feature map,
        # then the global encoder on the whole map -> the frame's latent. One frame's features at
        # a time (a 4096 px frame: 76 MB), so memory does not grow with the frame count.
        k = len(frames)
        weights8 = [downscale_weight(wt, SCALE) for wt in tile_weights(tiles, ch, cw, cfg)]
        latents = None
        for i, f in enumerate(frames):
            feats = np.zeros((1, b.feature_channels, ch // SCALE, cw // SCALE), dtype=np.float32)
            for j, (t, w8) in enumerate(zip(tiles, weights8)):
                src = Tile(t.y - m, t.x - m, t.h, t.w, t.ph, t.pw)
                patch = extract(f, src).transpose(2, 0, 1)[None]  # (1, 3, ph, pw)
                out = b.encode_local(np.ascontiguousarray(patch, dtype=np.float32))
                y8, x8, h8, w8_ = t.y // SCALE, t.x // SCALE, t.h // SCALE, t.w // SCALE
                feats[:, :, y8 : y8 + h8, x8 : x8 + w8_] += out[:, :, :h8, :w8_] * w8
                if on_tile is not None:  # the encoder's share of the progress: len(tiles) steps
                    on_tile((i * len(tiles) + j + 1) // k, total)
            z = b.encode_global(feats)[0]  # (C, h8, w8)
            del feats
            if latents is None:
                latents = np.empty((k,) + z.shape, dtype=np.float32)
            latents[i] = z
        done = len(tiles)
        # 4. the Fusion U-Net, then the global decoder
        idx = np.arange(b.frames) % k  # VAEEDOF: fewer than 7 frames are duplicated
        fused = self._fuse_latents(latents[idx][None])  # (1, C, h8, w8)
        del latents
        dec = b.decode_global(fused)  # (1, W_f, h8, w8)
        tick()

        # 5. local decoder per patch, blended into the output canvas
        out_canvas = np.zeros((ch, cw, 3), dtype=np.float32)
        for t, wt in zip(tiles, tile_weights(tiles, ch, cw, cfg)):
            if need is not None:
                ys = slice(max(0, t.y - m), max(0, min(h, t.y + t.h - m)))
                xs = slice(max(0, t.x - m), max(0, min(w, t.x + t.w - m)))
                if not need[ys, xs].any():
                    tick()
                    continue
            y8, x8 = t.y // SCALE, t.x // SCALE
            crop = dec[:, :, y8 : y8 + t.ph // SCALE, x8 : x8 + t.pw // SCALE]
            pix = b.decode_local(np.ascontiguousarray(crop))[0]  # (3, ph, pw)
            out_canvas[t.y : t.y + t.h, t.x : t.x + t.w] += pix[:, : t.h, : t.w].transpose(1, 2, 0) * wt[..., None]
            tick()
        out = out_canvas[m : m + h, m : m + w]
        return np.clip(out, 0.0, 1.0, out=out)
