"""The ``focusstack`` Typer app. One module per subcommand registers itself here."""

from __future__ import annotations

import signal
import sys

import typer

from focusstack import __version__
from focusstack.cli import bench, eval as eval_cmd, export_onnx, fuse, refine_tr, render_dataset, train
from focusstack.cli.options import Group

app = typer.Typer(
    name="focusstack",
    cls=Group,
    help=(
        "Fuse focus-bracketed photos into one all-in-focus image.\n\n"
        "Engines: decision (the default: the sharpest frame per pixel, copied; no networks, no "
        "weights), hybrid (decision plus transition-region refinement at edges and VAEEDOF where no "
        "frame is sharp), vaeedof (latent fusion with a frozen TAEF2 autoencoder and a Fusion U-Net). "
        "Progress and logs go to stderr (-v for more, -q for errors only), results to stdout. Exit "
        "codes: 0 success, 1 failure, 2 usage error, 130 interrupted. Set FOCUSSTACK_DEBUG=1 (or pass "
        "--debug to a command) for tracebacks."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"focusstack {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Focus stacking from the command line."""


fuse.register(app)
refine_tr.register(app)
render_dataset.register(app)
bench.register(app)
export_onnx.register(app)
eval_cmd.register(app)
train.register(app)
__import__("focusstack.cli.docs", fromlist=["register"]).register(app)  # `focusstack docs` (issue 18)


def _sigterm_as_interrupt(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C so atomic writes clean up."""
    try:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    except (ValueError, OSError):  # not in the main thread
        pass
    app()
