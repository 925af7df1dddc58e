"""`focusstack bench`: parse options, build a BenchConfig, call the job ``focusstack.jobs.bench.run_bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.jobs.bench import BACKENDS, BENCH_PRECISIONS, BenchConfig, check_baseline, parse_frames, run_bench, table_rows
from focusstack.cli.common import err_console, handle_errors, print_json
from focusstack.cli.options import FLAG, Command, DebugOpt, Device, JsonOpt, NoProgressOpt, VaeWeightsOpt, choice, value
from focusstack.config import FUSION_DIR_ENV

_D = BenchConfig()

BenchBackend = choice("BenchBackend", BACKENDS)
BenchPrecision = choice("BenchPrecision", BENCH_PRECISIONS)

HELP = f"""Measure how many {_D.size}x{_D.size} (--size) images per second fuse_patch produces for 2-7
input frames, per backend, device and precision (VAEEDOF Figure 6).

The defaults are the small CI configuration (about a minute on 2 cores). The Figure-6 table:

focusstack bench --size 512 --frames 2-7 --precision fp32 --precision bf16 --plot fig6.png

Inputs are seeded random frames; the Fusion U-Net is the given or shipped one, else a seeded
random one of the default architecture (speed does not depend on the weights). With --full, also
time one 7-frame {_D.full_size}x{_D.full_size} stack through the tiling engine per backend and
precision (minutes on a 2-core CPU).

With --baseline FILE (an earlier --json output), exit 1 when any matching entry (same backend,
device, precision, frames, size) is more than --max-regression percent slower, naming each.
Schema and the measured table: docs/bench.md.
"""


def register(app: typer.Typer) -> None:
    @app.command("bench", help=HELP, cls=Command)
    def bench(
        backend: Annotated[Optional[list[BenchBackend]], typer.Option("--backend", help="Repeatable. Default: every installed backend.", show_default=False)] = None,  # type: ignore[valid-type]
        device: Annotated[Device, typer.Option("--device", help="auto picks CUDA when the backend has it.")] = _D.device,  # type: ignore[valid-type]
        precision: Annotated[Optional[list[BenchPrecision]], typer.Option("--precision", help=f"Repeatable (default: {', '.join(_D.precisions)}). onnx runs fp32 only; fp16 needs CUDA. Unsupported pairs are skipped and listed.", show_default=False)] = None,  # type: ignore[valid-type]
        frames: str = typer.Option(",".join(map(str, _D.frames)), "--frames", help="Frame counts: a range (2-7), a list (2,7) or both (2,4-7); each 2..7."),
        size: int = typer.Option(_D.size, "--size", help="Image side in px (multiple of 64); 512 is the paper's."),
        repeats: int = typer.Option(_D.repeats, "--repeats", help="Timed calls per entry (median and spread over them)."),
        warmup: int = typer.Option(_D.warmup, "--warmup", help="Untimed calls before the timed ones."),
        threads: int = typer.Option(_D.threads, "--threads", help="Intra-op threads for torch and ONNX Runtime; 0 keeps each library's default."),
        full: bool = typer.Option(_D.full, "--full", help="Also time one 7-frame --full-size stack through the tiling engine (minutes on a CPU).", metavar=FLAG),
        full_size: int = typer.Option(_D.full_size, "--full-size", help="Side of the --full stack in px."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write a Figure-6 bar chart (.png; .svg/.pdf with matplotlib).", show_default=False),
        baseline: Optional[Path] = typer.Option(None, "--baseline", help="An earlier `bench --json` output to compare with.", show_default=False),
        max_regression: float = typer.Option(_D.max_regression, "--max-regression", help="With --baseline: exit 1 when an entry is more than PCT percent slower."),
        vae_weights: VaeWeightsOpt = None,
        fusion_weights: Optional[Path] = typer.Option(None, "--fusion-weights", help=f"Fusion U-Net folder (else ${FUSION_DIR_ENV} or the shipped focusstack/models/fusion; else random, speed only).", show_default=False),
        json_out: JsonOpt = False,
        quiet: NoProgressOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            config = BenchConfig(
                backends=tuple(value(b) for b in backend or ()),
                device=value(device),
                precisions=tuple(value(p) for p in precision) if precision else _D.precisions,
                frames=parse_frames(frames),
                size=size,
                repeats=repeats,
                warmup=warmup,
                threads=threads,
                full=full,
                full_size=full_size,
                vae_weights=vae_weights,
                fusion_weights=fusion_weights,
                plot=plot,
                baseline=baseline,
                max_regression=max_regression,
                show_progress=not quiet,
            )
            result = run_bench(config)
            if json_out:
                print_json(result.to_dict())
            else:
                _print_table(result)
            for s in result.skipped:
                err_console.print(f"skipped {s['backend']} {s['precision']}: {s['reason']}")
            if result.plot:
                err_console.print(f"wrote {result.plot}")
            if result.baseline:
                b = result.baseline
                err_console.print(f"compared {len(b['compared'])} entries with {b['file']}: "
                                  f"{len(b['regressions'])} more than {b['max_regression_pct']:g}% slower")
            check_baseline(result)


def _print_table(result) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(result)
    size = result.config["size"]
    table = Table(title=f"{size}x{size} images per second (median of {result.config['repeats']})")
    for h in header:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    out = Console(highlight=False)
    out.print(table)
    for f in result.full:
        out.print(f"full: {f['frames']} frames at {f['size']} px, {f['backend']} {f['precision']} ({f['device']}): "
                  f"{f['seconds']:.1f} s, peak {f['peak_memory_mb'] / 1024:.2f} GiB")
