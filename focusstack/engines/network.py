"""The network engines (hybrid, vaeedof), built from a ``FuseConfig``: weights resolved and
loaded, wrapped in a backend. Imports torch; reached lazily from :mod:`focusstack.engines.factory`."""

from __future__ import annotations

import logging

from focusstack.backends import make_backend
from focusstack.config import FuseConfig
from focusstack.engines.base import Engine
from focusstack.engines.hybrid import HybridEngine
from focusstack.engines.vaeedof import VAEEDOFEngine
from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir
from focusstack.refinement.models import load_refine_networks
from focusstack.refinement.refine import RefineConfig

log = logging.getLogger("focusstack.stack")


def build_network_engine(config: FuseConfig) -> Engine:
    """``config.engine`` ``"vaeedof"`` or ``"hybrid"``: the Fusion U-Net (refuses untrained
    weights, before any download), TAEF2, a backend, and for hybrid the trained FSB and KEB
    where shipped (else documented fallbacks, one warning, listed in ``engine.fallbacks``)."""
    fusion = load_fusion(config.fusion_weights)  # first: refuses untrained weights, no download
    vae = load_vae(resolve_vae_dir(config.vae_weights))
    backend = make_backend(config.backend, vae, fusion.model, device=config.device, precision=config.precision)
    vaeedof = VAEEDOFEngine(backend, config.tiles)
    if config.engine == "vaeedof":
        return vaeedof
    fsb, keb, _ = load_refine_networks(RefineConfig(show_progress=False))  # trained ones when shipped
    fallbacks = []
    if fsb is None:
        fallbacks.append("fsb: no trained FSB weights (models/fsb or $FOCUSSTACK_FSB_DIR); the decision map is the mask")
    if keb is None:
        fallbacks.append("keb: no trained KEB weights (models/keb or $FOCUSSTACK_KEB_DIR); the classical blur estimate is used")
    if fallbacks:
        log.warning("hybrid engine fallback: %s", "; ".join(fallbacks))
    return HybridEngine(vaeedof, fsb=fsb, keb=keb, fallbacks=fallbacks)
