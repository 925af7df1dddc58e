"""Where a backend runs: ``--device`` resolved for PyTorch (:func:`resolve_device`) and for ONNX
Runtime (:func:`resolve_onnx_device`), and whether ONNX Runtime is installed at all.

Cheap to import: torch and onnxruntime are imported inside the functions that ask them, so the
CLI, the decision engine and ``focusstack --help`` can import this module without either.

Devices are strings from :data:`focusstack.config.DEVICES` (``auto | cpu | cuda``); a resolved
device is ``"cpu"`` or ``"cuda"``, never ``"auto"``.
"""

from __future__ import annotations

from focusstack.config import DEVICES
from focusstack.errors import ConfigError


def check_device(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is one of :data:`DEVICES` (``auto | cpu | cuda``)."""
    if name not in DEVICES:
        raise ConfigError("unknown device", expected=" | ".join(DEVICES), actual=name)


def resolve_device(name: str) -> str:
    """``--device`` for PyTorch -> ``"cpu"`` or ``"cuda"``.

    ``auto`` -> ``cuda`` when PyTorch sees a CUDA GPU, else ``cpu``; ``cpu`` -> ``cpu`` (torch not
    asked); ``cuda`` without a GPU and any other name raise :class:`ConfigError`.
    """
    check_device(name)
    if name == "cpu":
        return "cpu"
    import torch  # only when a GPU may be used: this module stays torch-free at import

    if torch.cuda.is_available():
        return "cuda"
    if name == "auto":
        return "cpu"
    raise ConfigError(
        "--device cuda was asked for but no CUDA GPU is visible to PyTorch",
        expected="a CUDA build of torch and a GPU",
        actual=f"torch {torch.__version__}, cuda available: False",
        fix="use --device cpu (or auto)",
    )


def missing_onnx_error() -> ConfigError:
    """The error for the ONNX backend (or ``export-onnx``) without onnxruntime installed."""
    return ConfigError(
        "the ONNX backend needs onnxruntime, which is not installed",
        expected="onnx, onnxscript and onnxruntime (or onnxruntime-gpu) importable",
        actual="import onnxruntime failed",
        # no square brackets here: the CLI prints messages as rich markup, which would eat "[onnx]"
        fix="pip install onnx onnxscript onnxruntime (the onnx extra; onnxruntime-gpu for CUDA), "
        "or use --backend torch",
    )


def onnx_available() -> bool:
    """True when ``onnxruntime`` (or ``onnxruntime-gpu``) imports."""
    try:
        import onnxruntime  # noqa: F401  # optional extra: onnxruntime
    except ImportError:
        return False
    return True


def resolve_onnx_device(name: str) -> tuple[str, list[str]]:
    """``--device`` for ONNX Runtime -> ``(device, providers)``: ``"cpu"`` or ``"cuda"`` and the
    execution providers in order of preference. ``auto`` takes CUDA when onnxruntime offers it;
    ``cuda`` without the CUDA execution provider and any other name raise :class:`ConfigError`.
    Needs onnxruntime (``ImportError`` otherwise: check :func:`onnx_available` first)."""
    check_device(name)
    import onnxruntime as ort  # optional extra: onnxruntime

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if name == "cpu" or (name == "auto" and not has_cuda):
        return "cpu", ["CPUExecutionProvider"]
    if not has_cuda:
        raise ConfigError(
            "--device cuda was asked for but onnxruntime has no CUDA execution provider",
            expected="onnxruntime-gpu and a GPU",
            actual=f"onnxruntime {ort.__version__}, providers {', '.join(available)}",
            fix="install onnxruntime-gpu (the gpu extra) instead of onnxruntime, or use --device cpu",
        )
    return "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]
