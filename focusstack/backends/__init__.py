"""Backends: how the VAEEDOF networks run (PyTorch or ONNX Runtime), numpy in and out.

* :mod:`focusstack.backends.base`: the :class:`~focusstack.backends.base.FusionBackend`
  interface (shapes, dtypes and ranges of every call).
* :mod:`focusstack.backends.torch_backend`: PyTorch, CPU or CUDA, fp32 / bf16 / fp16.
* :mod:`focusstack.backends.onnx_backend`: ONNX Runtime, fp32, on graphs exported by
  :mod:`focusstack.backends.export`.
* :mod:`focusstack.backends.device`: ``--device`` resolved for either runtime.

:func:`make_backend` builds one by name. Importing this package imports neither torch nor
onnxruntime (nor numpy): the backends are reached through lazy references on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from focusstack.backends.device import resolve_device
from focusstack.config import BACKENDS
from focusstack.errors import ConfigError
from focusstack.lazy import load

if TYPE_CHECKING:
    from focusstack.backends.base import FusionBackend

__all__ = ["BACKENDS", "make_backend", "resolve_device"]


def make_backend(
    name: str,
    vae,  # noqa: ANN001 - focusstack.networks.taesd.TAESD
    fusion,  # noqa: ANN001 - focusstack.networks.fusion_unet.FusionUNet | None
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int = 0,
    cache: Path | None = None,
) -> FusionBackend:
    """``torch`` or ``onnx`` backend (:data:`BACKENDS`) for these models: what ``fuse --backend``
    and ``bench`` use.

    ``threads`` > 0 sets torch's intra-op threads (process-wide) or ONNX Runtime's per session.
    ``cache``: the ONNX export cache folder (default ``focusstack.backends.export.onnx_cache_dir()``);
    the torch backend ignores it. An unknown ``name`` raises :class:`ConfigError`.
    """
    if name == "torch":
        torch_backend = load("focusstack.backends.torch_backend:TorchBackend")
        if threads:
            import torch  # imported by the torch backend anyway

            torch.set_num_threads(threads)
        return torch_backend(vae, fusion, device=device, precision=precision)
    if name == "onnx":
        onnx_backend = load("focusstack.backends.onnx_backend:OnnxBackend")
        return onnx_backend.from_torch(vae, fusion, device=device, precision=precision, threads=threads, cache=cache)
    raise ConfigError(
        "unknown value for --backend",
        expected=" | ".join(BACKENDS),
        actual=repr(name),
        fix=f"pass one of: {', '.join(BACKENDS)}",
    )
