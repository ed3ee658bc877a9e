"""Self-contained HTML contact sheets for search answers and copy matches.

Self-contained (thumbnails inlined as base64 JPEG) so a report can be mailed or archived without
the data dir. Every string that came from a user (file names, paths) is HTML-escaped: a video
named ``<script>`` is shown, never run.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .errors import InputError

THUMB_SIDE = 240
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.3em} .row{display:flex;gap:12px;align-items:flex-start;margin:0 0 18px;padding:10px;
background:#fff;border:1px solid #ddd;border-radius:6px;flex-wrap:wrap}
figure{margin:0;width:%dpx} figure img{max-width:100%%;border-radius:4px;display:block}
figcaption{font-size:.8em;word-break:break-all} .q figcaption{font-weight:bold}
.none{color:#a00;align-self:center} .score{font-weight:bold}
""" % THUMB_SIDE


def thumbnail_uri(rgb: np.ndarray | None) -> str:
    """A small JPEG data URI of an RGB image (an empty string when there is no image)."""
    if rgb is None or rgb.size == 0:
        return ""
    h, w = rgb.shape[:2]
    scale = min(1.0, THUMB_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def image_file_uri(path: str | Path) -> str:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return thumbnail_uri(None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def figure(uri: str, caption_lines: Sequence[str], css: str = "") -> str:
    img = f'<img src="{uri}" alt="">' if uri else "<div>(no image)</div>"
    caption = "<br>".join(html.escape(line) for line in caption_lines)
    return f'<figure class="{css}">{img}<figcaption>{caption}</figcaption></figure>'


def row(cells: Sequence[str], empty_note: str = "") -> str:
    body = "".join(cells) + (f'<div class="none">{html.escape(empty_note)}</div>' if empty_note else "")
    return f'<div class="row">{body}</div>'


def page(title: str, rows: Sequence[str]) -> str:
    t = html.escape(title)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{t}</h1>{''.join(rows)}</body></html>")


def write(path: str | Path, content: str) -> None:
    """Write a page; a path that cannot take it (a folder, a missing folder, no permission) is an InputError."""
    try:
        Path(path).write_text(content, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def fmt_time(seconds: float) -> str:
    """1:02:03.4 / 2:03.4 style, as a person reads video time."""
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def fmt_span(start: float, end: float) -> str:
    """A part of a video, ``0:01.5-0:05.0``."""
    return f"{fmt_time(start)}-{fmt_time(end)}"
