"""Building the engine that ``FuseConfig.engine`` names.

The decision engine (numpy and OpenCV) is built here directly. The network engines (hybrid,
vaeedof) import torch, so they are built by :func:`focusstack.engines.network.build_network_engine`,
reached through a lazy reference: ``fuse --engine decision``, the default, never imports torch
(issue 17).
"""

from __future__ import annotations

from focusstack.config import FuseConfig
from focusstack.engines.base import Engine
from focusstack.engines.decision import DecisionEngine
from focusstack.lazy import call


def build_engine(config: FuseConfig) -> Engine:
    """Resolve and load the weights for ``config.engine`` and wrap them in a backend."""
    if config.engine == "decision":
        return DecisionEngine()
    return call("focusstack.engines.network:build_network_engine", config)
