"""The ``focusstack`` Typer app. One module per subcommand registers itself here.

Start-up (issue 17): ``focusstack --help``, ``--version`` and a shell-completion Tab must not pay
for numpy, OpenCV or torch. So the subcommand modules are imported lazily, by :class:`RootGroup`:
a command's module (and through it its library's config dataclass, which the help reads its
defaults from) is imported only when that command is run, its help is shown or its options are
completed. The root help and the completion of command names list each command by the first
paragraph of its help, kept in :data:`COMMANDS`; tests/test_cli_meta.py checks that each one is
the real command's.
"""

from __future__ import annotations

import signal
import sys
from importlib import import_module

import typer

from focusstack import __version__
from focusstack.cli.options import Group

#: Every subcommand, in the order ``--help`` lists them: name -> (module, the first paragraph of
#: its help as ``focusstack --help`` and zsh completion show it). The module has
#: ``register(app)``.
COMMANDS: dict[str, tuple[str, str]] = {
    "fuse": ("focusstack.cli.fuse", "Fuse a focus stack into one all-in-focus image."),
    "refine-tr": ("focusstack.cli.refine_tr", "Remove the transition-region halo of a near/far pair (Liu et al.: foreground mask, PSF\nsigma, diffusion elimination Eq. 13-15)."),
    "render-dataset": ("focusstack.cli.render_dataset", (
        "Render a synthetic multi-focus dataset: per sample, frames focused on each of several "
        "textured planes (subjects at 1-9.5 m, a background at 10 m), an all-in-focus GT, "
        "sharpest-frame masks, a depth map and subject mattes. Thin-lens defocus in linear light "
        "with correct occlusion (defocus spread), or Cycles through bpy with --engine blender. "
        "Deterministic per --seed; finished samples are skipped when rerun. See docs/render-dataset.md for the output layout.")),
    "bench": ("focusstack.cli.bench", "Measure how many 256x256 (--size) images per second fuse_patch produces for 2-7\ninput frames, per backend, device and precision (VAEEDOF Figure 6)."),
    "export-onnx": ("focusstack.cli.export_onnx", (
        "Export the VAE encoder, the VAE decoder and the Fusion U-Net to ONNX (opset 18, dynamic\n"
        "batch, height and width) as OUTDIR/encoder.onnx, decoder.onnx, fusion.onnx, each with a\n"
        ".onnx.json sidecar (weights digest, exporter, max abs difference from torch).")),
    "eval": ("focusstack.cli.eval", "Score fused images: VAEEDOF's Table 1 and Figure 4, the TR paper's Table 1."),
    "docs": ("focusstack.cli.docs", (
        "Print where the documentation (README, docs/), the man page and the shell completions "
        "are: the checkout's files in a source checkout, the installed data files otherwise. "
        "Read the man page with `man -l PATH` (or `man focusstack` when its folder is on MANPATH).")),
    "train": ("focusstack.cli.train", "Train the networks focusstack ships (weights land in models/)."),
}


def load_command(name: str):  # noqa: ANN201 - a Typer (Click) command; click is never imported
    """The real Typer command ``name``: its module imported and registered on a scratch app."""
    scratch = typer.Typer(cls=Group)
    scratch.callback()(lambda: None)  # a callback makes get_command build a group, not one command
    import_module(COMMANDS[name][0]).register(scratch)
    return typer.main.get_command(scratch).commands[name]


class _Commands(dict):
    """``group.commands``: a command is loaded on first ``commands[name]``."""

    def __missing__(self, name: str):  # noqa: ANN204
        if name not in COMMANDS:
            raise KeyError(name)
        self[name] = cmd = load_command(name)
        return cmd


class RootGroup(Group):
    """The top-level group: subcommands from :data:`COMMANDS`, imported on first use.

    Listing them (``focusstack --help``, ``focusstack <Tab>``) uses stand-ins that carry only the
    name and the help's first paragraph, so it imports no subcommand module."""

    def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)
        self._listing = 0

    def list_commands(self, ctx):  # noqa: ANN001, ANN201
        return list(COMMANDS) + [n for n in self.commands if n not in COMMANDS]

    def get_command(self, ctx, cmd_name):  # noqa: ANN001, ANN201
        if cmd_name not in COMMANDS or dict.__contains__(self.commands, cmd_name):
            return super().get_command(ctx, cmd_name)
        if self._listing:
            from typer.core import TyperCommand

            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return self.commands[cmd_name]

    def _list(self, method, *args):  # noqa: ANN001, ANN002, ANN202
        self._listing += 1
        try:
            return method(*args)
        finally:
            self._listing -= 1

    def format_help(self, ctx, formatter):  # noqa: ANN001, ANN201
        return self._list(super().format_help, ctx, formatter)

    def shell_complete(self, ctx, incomplete):  # noqa: ANN001, ANN201
        return self._list(super().shell_complete, ctx, incomplete)


app = typer.Typer(
    name="focusstack",
    cls=RootGroup,
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


def _sigterm_as_interrupt(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C so atomic writes clean up."""
    try:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    except (ValueError, OSError):  # not in the main thread
        pass
    app()
