"""`focusstack eval`: parse options, build an EvalConfig, call the job ``focusstack.jobs.eval.evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.cli.common import err_console, handle_errors, print_json
from focusstack.cli.options import FLAG, Command, DebugOpt, Device, JsonOpt, NoProgressOpt, OverwriteOpt, value
from focusstack.errors import UsageError

# focusstack.evaluation imports no torch/piq at module level: `focusstack --help` stays fast.
from focusstack.jobs.eval import EvalConfig, parse_method
from focusstack.lazy import call
from focusstack.metrics.registry import METRICS

_D = EvalConfig()

HELP = f"""Score fused images: VAEEDOF's Table 1 and Figure 4, the TR paper's Table 1.

PRED_DIR holds one method's outputs; --method NAME=DIR (repeatable) adds more methods. Files pair
by stem (name without extension) with --gt DIR (DIR/<stem>.<ext>), --sources DIR (DIR/<stem>/,
the frames) and --masks DIR (DIR/<stem>.<ext>, white where the first frame is sharp). A
render-dataset folder works directly for all three (samples/<stem>/gt.png, frame_*.png,
mask_*.png).

Metrics (--metrics, comma list; default: all the given references allow):
reference (with --gt): {', '.join(m.key for m in METRICS if m.kind == 'reference')};
fusion (with --sources, no GT): q_mi, q_abf, q_y; mask (with --masks): miou.
LPIPS, DISTS and PieAPP need weight files in the torch hub cache (torch.hub.get_dir()/checkpoints,
$TORCH_HOME moves it); a missing file makes the metric unavailable (named, with where to put it),
never a number. --download-weights fetches them.

--plots DIR draws each reference metric against patch difficulty (1 - max_k SSIM(GT, frame_k),
--patch px patches; needs --gt and --sources). The table goes to stderr; --json prints every
image and the means to stdout. Details: docs/eval.md.
"""


def register(app: typer.Typer) -> None:
    @app.command("eval", help=HELP, no_args_is_help=True, cls=Command)
    def eval_cmd(
        pred_dir: Optional[Path] = typer.Argument(None, help="Folder of one method's outputs (named after the folder).", show_default=False),
        gt: Optional[Path] = typer.Option(None, "--gt", help="GT folder (<stem>.<ext>) or render-dataset root.", show_default=False),
        sources: Optional[Path] = typer.Option(None, "--sources", help="Source frames: <stem>/ folders, or a render-dataset root.", show_default=False),
        masks: Optional[Path] = typer.Option(None, "--masks", help="GT decision masks (<stem>.<ext>, white = first frame) or a render-dataset root; adds mIoU.", show_default=False),
        method: Optional[list[str]] = typer.Option(None, "--method", help="NAME=DIR: another method's outputs; repeatable.", show_default=False),
        metrics: str = typer.Option(",".join(_D.metrics), "--metrics", help="Comma list of metrics; empty = all the given references allow."),
        json_out: JsonOpt = False,
        csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one row per (method, image) to this CSV file.", show_default=False),
        plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for the metric-vs-difficulty PNGs (created if missing).", show_default=False),
        difficulty: Optional[bool] = typer.Option(_D.difficulty, "--difficulty/--no-difficulty", help="Per-patch difficulty analysis in the JSON (needs --gt and --sources). Default: only with --plots.", show_default=False, metavar=FLAG),
        patch: int = typer.Option(_D.patch, "--patch", help="Patch side in px for the difficulty analysis."),
        bins: int = typer.Option(_D.bins, "--bins", help="Difficulty bins in the plots."),
        overwrite: OverwriteOpt = _D.overwrite,
        download_weights: bool = typer.Option(_D.download_weights, "--download-weights", help=f"Download missing LPIPS/DISTS/PieAPP weights (network; {_D.download_timeout_s:g} s timeout per file).", metavar=FLAG),
        device: Annotated[Device, typer.Option("--device", help="Where piq's metrics run.")] = _D.device,  # type: ignore[valid-type]
        threads: int = typer.Option(_D.threads, "--threads", help="torch intra-op threads; 0 keeps torch's default."),
        quiet: NoProgressOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            methods = [parse_method(m) for m in (method or [])]
            if pred_dir is not None:
                name = pred_dir.resolve().name or "pred"
                if any(n == name for n, _ in methods):
                    raise UsageError(f"PRED_DIR's name {name!r} is also a --method name", fix="rename that --method")
                methods.insert(0, (name, pred_dir))
            config = EvalConfig(
                methods=tuple(methods),
                gt=gt,
                sources=sources,
                masks=masks,
                metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
                csv=csv_path,
                plots=plots,
                difficulty=difficulty,
                patch=patch,
                bins=bins,
                overwrite=overwrite,
                download_weights=download_weights,
                device=value(device),
                threads=threads,
                show_progress=not quiet,
            )
            result = call("focusstack.jobs.eval:evaluate", config)
            _print_table(result)
            if json_out:
                print_json(result.to_dict())


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    a = abs(v)
    return f"{v:.3f}" if a >= 1 else (f"{v:.4f}" if a >= 1e-3 or a == 0 else f"{v:.2e}")


def _print_table(result) -> None:  # noqa: ANN001
    from rich.markup import escape
    from rich.table import Table

    n_img = len(result.images) // max(len(result.methods), 1)
    table = Table(title=f"focusstack eval: {n_img} image(s); mean per method, best in bold", title_justify="left")
    table.add_column("metric")
    table.add_column("", justify="center")
    for name in result.summary:
        table.add_column(name, justify="right")
    for m in result.metrics:
        vals = [per[m.key]["mean"] for per in result.summary.values() if per[m.key]["mean"] is not None]
        best = (max(vals) if m.higher_is_better else min(vals)) if len(vals) > 1 else None
        cells = []
        for per in result.summary.values():
            v = per[m.key]["mean"]
            s = _fmt(v)
            if v is not None and v == best:
                s = f"[bold]{s}[/]"
            if v is not None and per[m.key]["n"] < per[m.key]["of"]:
                s += "*"
            cells.append(s)
        table.add_row(m.label, m.arrow, *cells)
    err_console.print(table)
    notes = dict(result.unavailable)
    for per in result.summary.values():
        for k, cell in per.items():
            if cell["unavailable"] and k not in notes:
                notes[k] = cell["unavailable"] + (" (* mean over the other images)" if cell["mean"] is not None else "")
    for k, reason in notes.items():
        err_console.print(f"[yellow]{k}[/] unavailable: {escape(reason)}", markup=True, highlight=False)
    for path in result.written:
        err_console.print(f"wrote {path}")
