"""report.html: one page that opens from disk with no network. Plotly's JavaScript is inlined once, the render
grid is embedded, the turntables sit beside it in `turntables/`, and one filter box narrows the trial table and
the turntable gallery at once."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
import plotly.offline

from analysis.interactive import div

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1f2328}"
    "table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}table.t td,table.t th{padding:3px 9px;"
    "border-bottom:1px solid #d0d7de;text-align:right}table.t th{background:#f6f8fa}img{max-width:100%}"
    ".lead p{font-size:16px;margin:.4em 0}.gallery{display:flex;flex-wrap:wrap;gap:10px}"
    ".gallery figure{margin:0;width:150px;font-size:11px}.gallery img,.gallery video{width:150px}"
    "#filter{font-size:15px;padding:4px 8px;width:28em}.a\\>b{color:#1a7f37}.a\\<b{color:#cf222e}"
)
FILTER_JS = """
document.getElementById('filter').addEventListener('input', function (e) {
  var terms = e.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
  document.querySelectorAll('.filterable').forEach(function (el) {
    var text = el.getAttribute('data-text');
    el.style.display = terms.every(function (t) { return text.indexOf(t) >= 0; }) ? '' : 'none';
  });
});
"""


def bold(text: str) -> str:
    """Markdown's **x** becomes <b>x</b>, after escaping."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>empty</em></p>"
    return frame.to_html(index=False, border=0, classes="t", na_rep="")


def _text(settings: pd.Series) -> str:
    """What the filter box matches: a trial's settings (name, status, varied values), never its measurements, so
    that "30" finds guidance 30 and not a score or a time that happens to contain it."""
    return html.escape(" ".join(str(v) for v in settings.dropna().to_numpy()).lower(), quote=True)


def trial_table(trials: pd.DataFrame, settings: list[str]) -> str:
    """The trials, each row carrying the text of its `settings` columns for the filter box."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in trials.columns)
    keys = [c for c in settings if c in trials]
    rows = "".join(
        f'<tr class="filterable" data-text="{_text(row[keys])}">'
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.to_numpy())
        + "</tr>"
        for _, row in trials.iterrows()
    )
    return f'<table class="t" id="trials"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


#: When a run logged its turntable in several formats, the gallery shows the first of these it has: a GIF plays in
#: every browser, a build without the H.264 decoder included.
GALLERY_PREFERENCE = ("gif", "webm", "mp4")


def gallery(media: pd.DataFrame) -> str:
    """One turntable per run with its name and metric: GIFs as images, videos (mp4, webm) as looping videos. `media`
    has a row per file: run_id, format, path, caption, and settings (the run's, for the filter box)."""
    if media.empty:
        return "<p><em>no turntables logged</em></p>"
    rank = media["format"].map(
        lambda f: GALLERY_PREFERENCE.index(f) if f in GALLERY_PREFERENCE else len(GALLERY_PREFERENCE)
    )
    media = media.assign(_rank=rank).sort_values("_rank", kind="stable").drop_duplicates("run_id")
    items = []
    for _, m in media.iterrows():
        src = html.escape(m["path"], quote=True)
        tag = (
            f'<video src="{src}" autoplay loop muted playsinline></video>'
            if m["format"] in ("mp4", "webm")
            else f'<img src="{src}" alt="turntable">'
        )
        items.append(
            f'<figure class="filterable" data-text="{_text(m["settings"])}">{tag}'
            f"<figcaption>{html.escape(m['caption'])}</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def embedded_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render(
    title: str,
    lead: list[str],
    sections: list[tuple[str, str]],
    figures: dict[str, object],
    files: list[str],
) -> str:
    """The page: the headline lines, then each section (title, HTML) with the figure of the same title first."""
    body = [f"<h1>{html.escape(title)}</h1>", '<div class="lead">', *(f"<p>{bold(x)}</p>" for x in lead), "</div>"]
    body.append('<p><input id="filter" placeholder="filter trials and turntables: e.g. anneal cube"></p>')
    for heading, content in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if heading in figures:
            body.append(div(figures[heading]))
        body.append(content)
    for heading in (h for h in figures if h not in {s for s, _ in sections}):
        body += [f"<h2>{html.escape(heading)}</h2>", div(figures[heading])]
    links = ", ".join(f'<a href="{html.escape(f, quote=True)}">{html.escape(f)}</a>' for f in files)
    body.append(f"<p>Files: {links}.</p>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head>"
        f"<body>{''.join(body)}<script>{FILTER_JS}</script></body></html>\n"
    )
