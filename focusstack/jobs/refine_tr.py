"""The ``refine-tr`` job: read a near/far pair (or a longer stack), refine its transition
regions (``focusstack.refinement``), write the result, all outputs or none."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focusstack.config import DEFAULT_MAX_PIXELS
from focusstack.errors import StackError, UsageError
from focusstack.io import check_output, check_stack, output_bit_depth, read_image, write_images
from focusstack.maps.decision import decision_steps
from focusstack.refinement.models import load_refine_networks
from focusstack.refinement.ordering import Ordering, order_frames, order_pair_by_uncompositing
from focusstack.refinement.refine import RefineConfig, refine_pair
from focusstack.refinement.stack import refine_stack

log = logging.getLogger(__name__)


@dataclass
class RefineResult:
    output: Path
    near: Path
    far: Path
    width: int
    height: int
    bit_depth: int
    sigma_px: float
    info: dict
    ordering: dict
    mask_file: Path | None = None
    diffusion_file: Path | None = None
    timings_s: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "near": str(self.near),
            "far": str(self.far),
            "width": self.width,
            "height": self.height,
            "bit_depth": self.bit_depth,
            "sigma_px": round(self.sigma_px, 4),
            "ordering": self.ordering,
            "mask_file": str(self.mask_file) if self.mask_file else None,
            "diffusion_file": str(self.diffusion_file) if self.diffusion_file else None,
            "diffusion_encoding": "0.5 + S (mid-grey = nothing removed)" if self.diffusion_file else None,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            **self.info,
        }


def _grey(mask: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(mask, 0, 1)[..., None], 3, axis=2).astype(np.float32)


def refine_tr(
    inputs: Sequence[str | Path],
    output: str | Path,
    config: RefineConfig = RefineConfig(),
    *,
    init: str | Path | None = None,
    save_mask: str | Path | None = None,
    save_diffusion: str | Path | None = None,
) -> RefineResult:
    """Read the frames (any order; 2 = the paper's near/far pair, more = every near/far boundary
    of the decision map, see :mod:`focusstack.refinement.stack`), refine, write ``output`` (bit depth kept: 16-bit when any
    input is more than 8-bit and the format allows). Optional ``save_mask`` (near frame's
    foreground, white = foreground, input size) and ``save_diffusion`` (``0.5 + S``). The
    outputs are written all or none (``focusstack.io.write_images``).

    Raises:
        StackError: fewer than 2 frames, sizes differ, ``--init`` of another size.
        OutputExistsError: an output exists without ``overwrite``, or equals an input.
        WeightsError: FSB/KEB asked for explicitly but missing or corrupt.
    """
    t0 = time.perf_counter()
    paths = [Path(p) for p in inputs]
    if len(paths) < 2:
        raise StackError(
            "refine-tr needs a near/far pair (or a longer stack)",
            expected="2 or more frames",
            actual=f"{len(paths)} frame(s)",
            fix="give the near- and the far-focused frame (any order)",
        )
    max_pixels = config.max_pixels or DEFAULT_MAX_PIXELS
    infos = check_stack(paths, max_pixels=max_pixels)
    protected = list(paths) + ([Path(init)] if init else [])
    outs = [Path(output)] + [Path(p) for p in (save_mask, save_diffusion) if p]
    if len({o.resolve() for o in outs}) != len(outs):
        raise UsageError("the output, --save-mask and --save-diffusion must be different files")
    depths = [i.bit_depth for i in infos]
    for o in outs:
        output_bit_depth(o, depths)
        check_output(o, config.overwrite, protected)
    fsb, keb, used = load_refine_networks(config)
    frames = [read_image(p, max_pixels=max_pixels) for p in paths]
    init_frame = None
    if init is not None:
        init_frame = read_image(init, max_pixels=max_pixels)
        depths.append(init_frame.bit_depth)
        if init_frame.pixels.shape != frames[0].pixels.shape:
            raise StackError(
                f"--init {init}: size differs from the frames",
                expected=f"{frames[0].pixels.shape[1]}x{frames[0].pixels.shape[0]}",
                actual=f"{init_frame.pixels.shape[1]}x{init_frame.pixels.shape[0]}",
                fix="pass a fusion of these same frames, at their size",
            )
    t_read = time.perf_counter()
    pix = [f.pixels for f in frames]
    steps = decision_steps(pix)
    k = len(pix)
    if config.order == "auto":
        ordering = order_frames(pix, steps.labels, steps.lumas)
        if k == 2 and ordering.confidence < config.min_order_confidence:
            # the occlusion cue is unsure: ask the un-compositing test (maps/halo.py), which
            # decides only past its own gates
            ordering = order_pair_by_uncompositing(pix, steps) or ordering
    else:
        ordering = Ordering(tuple(range(k)), np.zeros((k, k), np.float32), np.zeros((k, k), np.int64), 0.0)
    ni, fi = ordering.order[0], ordering.order[-1]
    extra: dict = {}
    unsupported = config.order == "auto" and k == 2 and ordering.confidence < config.min_order_confidence
    if unsupported:
        # a flipped order turns the halo removal against the wrong frame: refuse it, keep R_init
        log.warning(
            "warning: which frame is near is uncertain (order confidence %.2f < %.2f): the pair is not "
            "refined, the output is the unrefined fusion; to refine anyway, pass --order given with the near frame first",
            ordering.confidence, config.min_order_confidence,
        )
        refined = np.asarray(init_frame.pixels if init_frame is not None else steps.fused, np.float32)
        mask, diffusion, sigma = steps.weights[ni], np.zeros_like(refined), 0.0
        rinfo = {"refined": False, "not_refined_because": f"order confidence {ordering.confidence:.2f} < {config.min_order_confidence}",
                 "r_init": "init-file" if init_frame is not None else "decision-engine"}
    elif k == 2:
        res = refine_pair(
            pix[ni], pix[fi], config, init=init_frame.pixels if init_frame is not None else None,
            decision_weights=steps.weights[[ni, fi]], fsb=fsb, keb=keb,
        )
        refined, mask, diffusion, sigma, rinfo = res.refined, res.mask, res.diffusion, res.sigma_px, res.info
    else:
        st = refine_stack(pix, config, init=init_frame.pixels if init_frame is not None else None, steps=steps, ordering=ordering, fsb=fsb, keb=keb)
        refined, mask, diffusion, rinfo = st.refined, st.nearness, st.diffusion, st.info
        sigma = float(np.mean([p["sigma_px"] for p in st.pairs])) if st.pairs else 0.0
        extra = {"pairs": [p | {"near_file": str(paths[p["near"]]), "far_file": str(paths[p["far"]])} for p in st.pairs],
                 "mask_encoding": "nearness: 1 = the nearest frame's region, 0 = the farthest's"}
    t_refine = time.perf_counter()
    ref = frames[0]
    bit_depth = output_bit_depth(output, depths)
    images = [(output, refined, bit_depth, ref.exif, ref.icc)]
    if save_mask:
        images.append((save_mask, _grey(mask), output_bit_depth(save_mask, depths), None, None))
    if save_diffusion:
        images.append((save_diffusion, np.clip(0.5 + diffusion, 0, 1), output_bit_depth(save_diffusion, depths), None, None))
    # all or none: a full disk after the first file must not leave it behind (a rerun would
    # then stop at "output exists")
    write_images(images, overwrite=config.overwrite, protected=protected)
    t_end = time.perf_counter()
    info = {"refined": True} | dict(rinfo) | extra
    info["frames_near_to_far"] = [str(paths[i]) for i in ordering.order]
    info["weights"] = used
    if init is not None:
        info["init_file"] = str(init)
    h, w = refined.shape[:2]
    return RefineResult(
        output=Path(output), near=paths[ni], far=paths[fi], width=w, height=h, bit_depth=bit_depth, sigma_px=sigma,
        info=info, ordering=ordering.to_dict() | {"method": config.order},
        mask_file=Path(save_mask) if save_mask else None, diffusion_file=Path(save_diffusion) if save_diffusion else None,
        timings_s={"read": t_read - t0, "refine": t_refine - t_read, "write": t_end - t_refine, "total": t_end - t0},
    )
