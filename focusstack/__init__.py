"""focusstack: focus stacking from the command line.

The package mirrors the pipeline: ``io`` (read and write frames), ``tiling`` (patches and blend
masks), ``networks`` (TAEF2 autoencoder, Fusion U-Net, weight resolution), ``backends`` (how the
networks run), ``engines`` (whole fusion methods), ``rendering`` (synthetic datasets) and ``cli``.
"""

__version__ = "0.1.0"
