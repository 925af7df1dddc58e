"""The ``fuse --batch --report FILE.html`` contact sheet: one row per stack, the fused output
beside the stack's sharpest frame, each thumbnail linking to its full-size file.

:class:`StackThumbs` is fed every frame as it is read and the fused result, and keeps two small
thumbnails (never the frames): the output, and the frame with the most detail overall (mean
squared Laplacian of luminance at <= 512 px, the same for every frame). :func:`write_report`
writes one self-contained HTML file (thumbnails inline as JPEG data URIs; links relative to the
report's folder) atomically.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from focusstack.io.writers import atomic_output

#: Longer side of a thumbnail (px).
THUMB_SIDE = 320
#: Longer side (px) at which frames are compared for sharpness.
SHARPNESS_SIDE = 512


def _resize_to(pixels: np.ndarray, side: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    s = min(1.0, side / max(h, w))
    if s >= 1.0:
        return np.asarray(pixels, np.float32)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    return cv2.resize(np.asarray(pixels, np.float32), size, interpolation=cv2.INTER_AREA)


def thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] -> ``(h, w, 3)`` uint8, longer side at most ``side``."""
    small = _resize_to(pixels, side)
    return np.round(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8)


def sharpness(pixels: np.ndarray) -> float:
    """Mean squared Laplacian of the luminance at <= :data:`SHARPNESS_SIDE` px (larger: more detail)."""
    small = _resize_to(pixels, SHARPNESS_SIDE)
    y = small @ np.array([0.2126, 0.7152, 0.0722], np.float32) if small.ndim == 3 else small
    lap = cv2.Laplacian(np.ascontiguousarray(y, np.float32), cv2.CV_32F)
    return float(np.mean(lap * lap))


class StackThumbs:
    """Collects the two thumbnails of one stack while it is fused."""

    def __init__(self) -> None:
        self.best_score = -1.0
        self.best_name: str | None = None
        self.best_path: str | None = None
        self.frame_thumb: np.ndarray | None = None
        self.output_thumb: np.ndarray | None = None

    def on_frame(self, path: Path, pixels: np.ndarray) -> None:
        score = sharpness(pixels)
        if score > self.best_score:
            self.best_score, self.best_name, self.best_path = score, Path(path).name, str(path)
            self.frame_thumb = thumbnail(pixels)

    def on_output(self, pixels: np.ndarray) -> None:
        self.output_thumb = thumbnail(pixels)


@dataclass
class ReportEntry:
    """One row: ``status`` is ``wrote``, ``skipped`` or ``failed``."""

    name: str
    status: str
    output: str | None = None
    message: str = ""
    thumbs: StackThumbs | None = None
    extra: dict = field(default_factory=dict)


def _data_uri(thumb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(thumb).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _href(target: str, report_dir: Path) -> str:
    try:
        rel = os.path.relpath(Path(target).resolve(), report_dir.resolve())
    except ValueError:  # another drive (Windows)
        rel = str(Path(target).resolve())
    return html.escape(Path(rel).as_posix(), quote=True)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #f6f6f4; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em 0; }
p.summary { margin: 0 0 1em 0; color: #444; }
table { border-collapse: collapse; }
td, th { padding: .45em .7em; border-bottom: 1px solid #ddd; vertical-align: top; text-align: left; }
th { font-weight: 600; font-size: .9em; color: #555; }
img { max-width: 320px; max-height: 320px; display: block; border: 1px solid #bbb; background: #fff; }
.status { font-weight: 600; }
.wrote { color: #1a7f37; } .skipped { color: #6e6e6e; } .failed { color: #c62828; }
pre { white-space: pre-wrap; max-width: 40em; margin: 0; font-size: .85em; }
.caption { font-size: .8em; color: #555; margin-top: .2em; }
.none { width: 160px; height: 100px; display: flex; align-items: center; justify-content: center;
        border: 1px dashed #bbb; color: #888; font-size: .85em; }
"""


def render_report(entries: list[ReportEntry], report_path: Path, title: str) -> str:
    """The HTML text of the contact sheet (see the module docstring)."""
    report_dir = Path(report_path).parent
    counts = {s: sum(1 for e in entries if e.status == s) for s in ("wrote", "skipped", "failed")}
    rows = []
    for e in entries:
        t = e.thumbs
        if t is not None and t.output_thumb is not None and e.output:
            out_cell = (f'<a href="{_href(e.output, report_dir)}"><img alt="output of {html.escape(e.name)}" '
                        f'src="{_data_uri(t.output_thumb)}"></a><div class="caption">{html.escape(Path(e.output).name)}</div>')
        else:
            out_cell = '<div class="none">no output</div>'
        if t is not None and t.frame_thumb is not None and t.best_path:
            frame_cell = (f'<a href="{_href(t.best_path, report_dir)}"><img alt="sharpest frame of {html.escape(e.name)}" '
                          f'src="{_data_uri(t.frame_thumb)}"></a><div class="caption">{html.escape(t.best_name or "")}</div>')
        else:
            frame_cell = '<div class="none">not measured</div>'
        detail = html.escape(e.message) if e.message else ""
        rows.append(
            f'<tr class="{e.status}"><td><b>{html.escape(e.name)}</b><div class="status {e.status}">{e.status}</div></td>'
            f"<td>{out_cell}</td><td>{frame_cell}</td><td><pre>{detail}</pre></td></tr>"
        )
    summary = f"{counts['wrote']} fused, {counts['skipped']} skipped (output exists), {counts['failed']} failed"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"summary\">{summary}</p>"
        "<table><thead><tr><th>stack</th><th>output</th><th>sharpest frame</th><th>details</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )


def write_report(path: Path, entries: list[ReportEntry], *, title: str, overwrite: bool = True,
                 protected: tuple = ()) -> Path:
    """Write the contact sheet atomically (a rerun replaces the batch's own report)."""
    text = render_report(entries, path, title).encode("utf-8")
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        with open(tmp, "wb") as f:
            f.write(text)
    return Path(path)
