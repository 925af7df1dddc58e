"""Run-time defaults, in one place. The CLI help text reads its defaults from here.

These are *run* settings (what to do with a stack). A model's *architecture* lives in its own
config (``focusstack.networks.fusion_unet.FusionUNetConfig``) saved beside its weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from focusstack.errors import ConfigError

#: hybrid (default): source pixels where a frame is sharp, TR refinement at transitions, VAEEDOF
#: where no frame is; vaeedof: the VAEEDOF paper, pure; decision: the TR paper's decision fusion.
ENGINES = ("hybrid", "vaeedof", "decision")
#: Trained FSB/KEB folders (refine-tr, hybrid); else models/fsb, models/keb.
FSB_DIR_ENV = "FOCUSSTACK_FSB_DIR"
KEB_DIR_ENV = "FOCUSSTACK_KEB_DIR"
#: The weights file of every exported model folder (beside config.json and SHA256SUMS).
MODEL_WEIGHTS_FILE = "model.safetensors"
#: Every part that can be exported. The ONNX backend runs the split parts (``BACKEND_PARTS``);
#: ``encoder`` and ``decoder`` are the whole autoencoder halves, for use outside focusstack.
PARTS = ("encoder_local", "encoder_global", "decoder_global", "decoder_local", "fusion", "encoder", "decoder")
BACKEND_PARTS = ("encoder_local", "encoder_global", "decoder_global", "decoder_local", "fusion")
#: Max abs difference allowed between ONNX Runtime and torch (fp32) on the verification input.
#: Measured: about 3e-6 (encoder, decoder) and 1e-6 (Fusion U-Net).
TOLERANCE = 1e-3

BACKENDS = ("torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``train fsb|keb --device`` (focusstack.training.tr_loop reads it: torch-free here for the CLI).
TRAIN_DEVICES = ("cpu", "cuda", "auto")
#: Most frames the Fusion U-Net takes at once (VAEEDOF, section 3).
MAX_FRAMES = 7
#: Decoded-pixel limit per frame, checked from the header before decoding (image-bomb guard).
DEFAULT_MAX_PIXELS = 300_000_000
#: Environment variable that points at the TAEF2 weights folder.
VAE_DIR_ENV = "FOCUSSTACK_VAE_DIR"
#: Environment variable that points at the Fusion U-Net folder (safetensors + config.json).
FUSION_DIR_ENV = "FOCUSSTACK_FUSION_DIR"
DEBUG_ENV = "FOCUSSTACK_DEBUG"


#: The shipped models' kinds, each a folder of ``focusstack/models/`` (package data).
MODEL_KINDS = ("fusion", "fsb", "keb")
#: The environment variable that overrides each kind's folder.
MODEL_DIR_ENVS = {"fusion": FUSION_DIR_ENV, "fsb": FSB_DIR_ENV, "keb": KEB_DIR_ENV}


def models_dir() -> Path:
    """``focusstack/models/``, the trained weights shipped inside the package (package data,
    found with ``importlib.resources``, so the same in a checkout and in an installed wheel)."""
    from importlib.resources import files

    root = files("focusstack").joinpath("models")
    # An ordinary (unzipped) install gives a real path; the loaders need one for safetensors.
    return Path(str(root))


#: Former name (the models lived in ``models/`` at the top of the checkout until issue 18).
repo_models_dir = models_dir


def model_dir(kind: str) -> Path:
    """The folder of model ``kind``: its environment variable when set, else the shipped one."""
    if kind not in MODEL_KINDS:
        raise ConfigError("unknown model kind", expected=" | ".join(MODEL_KINDS), actual=repr(kind))
    return Path(os.environ.get(MODEL_DIR_ENVS[kind]) or models_dir() / kind)


@dataclass(frozen=True)
class TileConfig:
    """Patch tiling (VAEEDOF, Figure 3): square patches overlapping by ``overlap`` of their size."""

    tile: int = 512
    overlap: float = 0.25
    #: Mirrored context added around the whole image, so that the image's own border is far from
    #: the canvas border where the networks' zero padding distorts the output. Measured on a flat
    #: field with the trained weights (760 x 960, 512 px patches): largest deviation 1.97/255 with
    #: 32 px, 1.16/255 with 64, 0.62/255 with 96, 0.34/255 with 128. 96 px costs 12% more work
    #: than 32 px on a 2048 px image, 5% at 4096 px.
    margin: int = 96
    #: Fraction of each overlap, at the patch's outer edge, given (almost) zero blend weight:
    #: the outermost pixels of a patch are its least reliable (see focusstack.tiling).
    dead_zone: float = 0.25

    def __post_init__(self) -> None:
        if self.tile < 64 or self.tile % 64:
            raise ConfigError(
                "--tile must be a multiple of 64 of at least 64",
                expected="64, 128, ..., 512, ...",
                actual=str(self.tile),
                fix="pass --tile 512 (the paper's size) or another multiple of 64",
            )
        if not 0.0 <= self.overlap < 0.5:
            raise ConfigError(
                "tile overlap out of range", expected="0 <= overlap < 0.5", actual=str(self.overlap)
            )
        if not 0 <= self.margin <= 256 or self.margin % 8:
            raise ConfigError("tile margin out of range", expected="a multiple of 8 in 0..256", actual=str(self.margin))
        if not 0.0 <= self.dead_zone < 1.0:
            raise ConfigError("dead zone out of range", expected="0 <= dead_zone < 1", actual=str(self.dead_zone))

    @property
    def stride(self) -> int:
        """Step between patch origins, a multiple of 8 (the latent grid)."""
        return max(8, int(round(self.tile * (1.0 - self.overlap) / 8.0)) * 8)


ALIGN_MODELS = ("similarity", "affine", "homography")
FOCUS_ORDERS = ("auto", "name")


@dataclass(frozen=True)
class AlignConfig:
    """Frame alignment and exposure matching before fusion (docs/align.md)."""

    #: Register every frame to the reference frame (the middle of the focus order).
    enabled: bool = True
    #: similarity (shift, rotation, one scale: camera shake and focus breathing; fewest
    #: parameters, so the least drift along a chain of defocused neighbours), affine, homography.
    model: str = "similarity"
    #: Keep the reference frame's size (edge pixels repeat where a frame does not reach)
    #: instead of cropping to the area every frame covers.
    keep_size: bool = False
    #: Match exposure and white balance (one gain per channel) to the reference frame.
    exposure: bool = True
    #: Longer side (px) of the grey image that registration works on; transforms are scaled
    #: back to full resolution.
    max_side: int = 768
    #: Shorter side (px) below which the registration pyramid stops.
    min_side: int = 48
    #: ECC iterations per pyramid level.
    iterations: int = 100
    #: A transform moving no corner by this much (px) is the identity: the frame is not resampled.
    identity_tolerance: float = 1e-3
    #: Estimated transforms (to the reference) moving no corner by more than this (px) are
    #: taken as exactly the identity. ECC on differently defocused but perfectly registered
    #: frames scatters by 0.03-0.17 px (measured); a shift this small is invisible, and
    #: snapping keeps registered frames bit-exact.
    snap_px: float = 0.25
    #: Gains within this of 1 are not applied (the frame stays bit-exact). Equally exposed
    #: but differently defocused frames measure within 0.1-0.3 % of 1; 0.5 % is 1.3/255 at white.
    gain_tolerance: float = 0.005
    #: Largest corner displacement between two neighbouring frames, as a fraction of the
    #: image diagonal; more means registration went wrong.
    max_step: float = 0.1
    #: Lowest ECC correlation accepted between neighbouring frames.
    min_correlation: float = 0.2
    #: Verification of every pairwise transform against the identity (docs/align.md): both
    #: frames are low-passed (Gaussian, sigma this fraction of the working image's long side,
    #: so defocus differences matter little) and compared by 1 - normalised cross-correlation.
    verify_sigma: float = 0.005
    #: A transform is kept only when it lowers that residual to at most this share of the
    #: identity's; otherwise the frame is taken as registered already (ECC on differently
    #: defocused, registered frames drifts by up to 15 px while lowering it to 0.81-1.4x;
    #: real shifts and focus breathing of 1-2 % lower it to below 0.65x on devA).
    verify_ratio: float = 0.7
    #: ... and lowers it by at least this much in absolute terms (a registered pair matches to
    #: within 0.001 already; a shift of a few px leaves 0.0014 to 0.05).
    verify_min_gain: float = 0.001
    #: Refine and judge each pairwise transform on blur-matched composites (both frames given
    #: the same blur everywhere, focusstack.align.blurmatch) when the frames differ in blur:
    #: plain ECC reads a blurred foreground's spread as a scale change (docs/align.md).
    blur_matched: bool = True
    #: ... and keep its transform only when the low-passed frames also match better under it
    #: than under the identity, by this ratio of residuals, and the product of that ratio and
    #: the composites' ratio is at most blur_matched_gain (docs/align.md has the figures).
    blur_matched_lowpass: float = 0.95
    blur_matched_gain: float = 0.5
    #: Below this low-pass correlation with its neighbour, under the identity and the estimated
    #: transform alike, a frame does not belong to the stack (a stray shot): an error.
    stray_correlation: float = 0.5

    def __post_init__(self) -> None:
        if self.model not in ALIGN_MODELS:
            raise ConfigError(
                "unknown value for --align-model",
                expected=" | ".join(ALIGN_MODELS),
                actual=repr(self.model),
                fix=f"pass one of: {', '.join(ALIGN_MODELS)}",
            )
        if self.max_side < 64:
            raise ConfigError("alignment max_side too small", expected=">= 64", actual=str(self.max_side))
        if not 8 <= self.min_side <= self.max_side:
            raise ConfigError("alignment min_side out of range", expected=f"8..{self.max_side}", actual=str(self.min_side))
        if not 0.0 <= self.identity_tolerance <= self.snap_px <= 1.0:
            raise ConfigError(
                "alignment tolerances out of range", expected="0 <= identity_tolerance <= snap_px <= 1",
                actual=f"{self.identity_tolerance}, {self.snap_px}",
            )
        if self.iterations < 1:
            raise ConfigError("alignment iterations must be >= 1", expected=">= 1", actual=str(self.iterations))
        if not 0.0 < self.max_step <= 1.0:
            raise ConfigError("alignment max_step out of range", expected="0 < max_step <= 1", actual=str(self.max_step))
        if not (0.0 < self.verify_sigma < 0.1 and 0.0 < self.verify_ratio <= 1.0 and -1.0 <= self.stray_correlation < 1.0):
            raise ConfigError(
                "alignment verification settings out of range",
                expected="0 < verify_sigma < 0.1, 0 < verify_ratio <= 1, -1 <= stray_correlation < 1",
                actual=f"{self.verify_sigma}, {self.verify_ratio}, {self.stray_correlation}",
            )


@dataclass(frozen=True)
class FuseConfig:
    """Everything ``focusstack fuse`` needs besides its inputs and output."""

    #: decision: the fast CPU default (devbench: best PSNR of every tool measured, at seconds
    #: per stack); hybrid and vaeedof add the generative VAEEDOF fill (minutes per stack on a
    #: CPU; docs/hybrid.md says where it helps).
    engine: str = "decision"
    backend: str = "torch"
    device: str = "auto"
    precision: str = "auto"
    tiles: TileConfig = field(default_factory=TileConfig)
    overwrite: bool = False
    vae_weights: Path | None = None
    fusion_weights: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    show_progress: bool = True
    align: AlignConfig = field(default_factory=AlignConfig)
    #: Most frames fused at once (long stacks are fused in focus-ordered slabs of this many).
    slab_size: int = MAX_FRAMES
    #: Frames shared by consecutive slabs, so that no depth falls between two slabs.
    slab_overlap: int = 1
    #: auto: the focus order found from the frames (per-region sharpness), falling back to the
    #: name order when that is not clearly better; name: the natural order of the file names.
    focus_order: str = "auto"
    #: hybrid engine: write its maps (decision map, confidence, each engine's output) here.
    save_steps: Path | None = None
    #: ``--depth-map``: a 16-bit PNG/TIFF of the focus-order index of the sharpest frame per
    #: pixel (focusstack.depthmap); ``--depth-map-preview``: the same in a colour map.
    depth_map: Path | None = None
    depth_map_preview: Path | None = None
    #: Create a missing output folder (when the result is written) instead of refusing it.
    make_folder: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("--engine", self.engine, ENGINES),
            ("--backend", self.backend, BACKENDS),
            ("--device", self.device, DEVICES),
            ("--precision", self.precision, PRECISIONS),
            ("--focus-order", self.focus_order, FOCUS_ORDERS),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"unknown value for {name}",
                    expected=" | ".join(allowed),
                    actual=repr(value),
                    fix=f"pass one of: {', '.join(allowed)}",
                )
        if self.max_pixels <= 0:
            raise ConfigError("--max-pixels must be positive", expected="> 0", actual=str(self.max_pixels))
        if self.save_steps is not None and self.engine != "hybrid":
            raise ConfigError(
                "--save-steps is only written by the hybrid engine",
                expected="--engine hybrid",
                actual=f"--engine {self.engine}",
                fix="drop --save-steps, or use --engine hybrid",
            )
        if self.engine == "decision" and self.device == "cuda":
            raise ConfigError(
                "--device cuda does not apply to the decision engine",
                expected="--device auto or cpu with --engine decision (it runs on the CPU with OpenCV)",
                actual="--device cuda",
                fix="drop --device cuda, or pass --engine hybrid or vaeedof to run the networks on CUDA",
            )
        if self.slab_size < 2:
            raise ConfigError("--slab-size must be at least 2", expected=">= 2", actual=str(self.slab_size))
        if not 0 <= self.slab_overlap <= max(0, self.slab_size - 2):
            raise ConfigError(
                "--slab-overlap out of range",
                expected=f"0 <= overlap <= {max(0, self.slab_size - 2)}",
                actual=str(self.slab_overlap),
                fix=(f"pass --slab-overlap {max(0, self.slab_size - 2)}{' or less' if self.slab_size > 2 else ''} "
                     f"with --slab-size {self.slab_size}, or a --slab-size of at least {self.slab_overlap + 2}"),
            )


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")
