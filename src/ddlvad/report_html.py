"""One self-contained HTML page for an evaluation report (works offline, e.g. from an e-mail).

Images are embedded as base64 ``data:`` URIs; there is no external CSS, JS or font and no
script at all. Every piece of text from the report (video ids, protocol values, title) goes
through :func:`html.escape`. This module does not import torch or matplotlib.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DATA_PREFIX = "data:image/png;base64,"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1000px; padding: 0 1em; color: #1d232a; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #cfd6dd; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef2f6; }
.note { color: #55606b; font-size: 0.9em; }
.warn { background: #fff4e0; border: 1px solid #e8b45a; padding: 0.5em 1em; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
figure { margin: 1em 0; }
"""


def render_report(report: dict, images: dict[str, str | Path | bytes], title: str) -> str:
    """The HTML page (a string) for ``report`` as :func:`ddlvad.metrics.frame_metrics` returns it.

    ``images`` maps a name to a PNG given as bytes, as a path to a PNG file, or as a
    ``data:image/png;base64,...`` string. ``"roc"`` is shown with the summary; a name equal to
    a video id of ``report["videos"]`` is shown in that video's section; any other name (e.g.
    ``"weight"``, ``"loss"``) under "Other figures". If ``report`` has a ``"scenes"`` entry
    (the dict of :func:`ddlvad.metrics.aggregate_scenes`) a per-scene table is added.
    AUC, EER and AP are printed in %; missing values as "n/a".
    """
    e = html.escape
    videos: dict[str, dict] = report.get("videos", {})
    uris = {name: _data_uri(name, img) for name, img in images.items()}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    parts += _summary(report)
    if report.get("scenes"):
        parts += _scenes(report["scenes"])
    if report.get("localisation"):
        parts += _localisation(report["localisation"], uris.get("localisation"))
    parts += _protocol(report.get("protocol", {}))
    if "roc" in uris:
        parts += ['<section id="roc"><h2>ROC of pooled frames</h2>', _img(uris["roc"], "ROC curve"), "</section>"]
    parts += _video_table(videos, uris)
    for vid in videos:
        if vid in uris and vid != "roc":
            parts += [f'<figure id="video-{e(vid)}">', _img(uris[vid], f"scores of video {vid}"),
                      f"<figcaption>video {e(vid)}</figcaption></figure>"]
    others = [name for name in uris if name not in ("roc", "localisation") and name not in videos]
    if others:
        parts.append('<section id="other-figures"><h2>Other figures</h2>')
        for name in others:
            parts += ["<figure>", _img(uris[name], name), f"<figcaption>{e(name)}</figcaption></figure>"]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------- pieces
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _int(x: int | None) -> str:
    return "n/a" if x is None else f"{x:,}"


def _rows(rows: list[tuple[str, str]], numbers: bool = True) -> str:
    e = html.escape
    cls = ' class="num"' if numbers else ""
    return "".join(f'<tr><th scope="row">{e(k)}</th><td{cls}>{e(v)}</td></tr>' for k, v in rows)


def _summary(r: dict) -> list[str]:
    p = r.get("protocol", {})
    smoothing = p.get("smoothing", "?")
    if smoothing == "median":
        smoothing = f"median, window {p.get('window')} frames"
    elif smoothing == "gaussian":
        smoothing = f"gaussian, sigma {p.get('sigma')} frames"
    out = ['<section id="summary"><h2>Summary</h2>']
    if not r.get("labels_available", False):
        out.append('<p class="warn">No ground-truth labels: the metrics are not available.</p>')
    out.append("<table>" + _rows([
        ("AUC micro (all frames pooled)", _pct(r.get("auc_micro"))),
        ("AUC macro (mean over videos with both classes)", _pct(r.get("auc_macro"))),
        ("EER (pooled)", _pct(r.get("eer"))),
        ("AP (pooled, abnormal = positive)", _pct(r.get("ap"))),
        ("frames scored", _int(r.get("frames_scored"))),
        ("frames evaluated (scored and labelled)", _int(r.get("frames_evaluated"))),
        ("frames abnormal", _int(r.get("frames_abnormal"))),
        ("videos", _int(len(r.get("videos", {})))),
    ]) + "</table>")
    out.append(f'<p class="note">Smoothing: {html.escape(str(smoothing))}; normalisation: '
               f'{html.escape(str(p.get("normalise", "?")))}; frames without a score are dropped '
               "with their labels.</p></section>")
    return out


def _scenes(agg: dict) -> list[str]:
    rows = [(f"scene {s}", _pct(a)) for s, a in agg.get("scenes", {}).items()]
    rows += [
        ("median of scene AUCs", _pct(agg.get("auc_scene_median"))),
        ("mean of scene AUCs", _pct(agg.get("auc_scene_mean"))),
        ("AUC micro, all scenes pooled", _pct(agg.get("auc_micro_pooled"))),
    ]
    return ['<section id="scenes"><h2>Scenes</h2><table>', _rows(rows), "</table></section>"]


def _localisation(loc: dict, uri: str | None) -> list[str]:
    e = html.escape
    protocol = loc.get("protocol") or {}
    annotated = protocol.get("track_source") == "annotations"
    rows = [("pixel-level AUC (40 % rule)", _pct(loc.get("pixel_auc"))), ("RBDC", _pct(loc.get("rbdc"))),
            ("TBDC", _pct(loc.get("tbdc"))), ("frames with pixel masks", _int(loc.get("frames"))),
            ("abnormal frames among them", _int(loc.get("abnormal_frames"))),
            ("frames in RBDC/TBDC", _int(loc.get("rbdc_frames"))),
            ("ground-truth regions", _int(loc.get("regions"))), ("ground-truth tracks", _int(loc.get("tracks"))),
            ("tracks from", "annotated tracks" if annotated else "pixel masks")]
    out = ['<section id="localisation"><h2>Localisation</h2><table>', _rows(rows), "</table>"]
    if protocol and not annotated:
        out.append(f'<p class="warn">RBDC/TBDC: {e(str(protocol.get("tracks", "")))}.</p>')
    if uri:
        out.append(_img(uri, "RBDC and TBDC curves"))
    for key, text in protocol.items():
        out.append(f'<p class="note"><b>{e(key)}</b>: {e(str(text))}</p>')
    return out + ["</section>"]


def _protocol(p: dict) -> list[str]:
    rows = [(str(k), "null" if v is None else str(v)) for k, v in p.items()]
    return ['<section id="protocol"><h2>Protocol</h2><table>', _rows(rows, numbers=False), "</table></section>"]


def _video_table(videos: dict[str, dict], uris: dict[str, str]) -> list[str]:
    e = html.escape
    out = ['<section id="videos"><h2>Videos</h2><table>',
           "<tr><th>video</th><th>frames</th><th>scored</th><th>abnormal</th><th>AUC</th></tr>"]
    for vid, v in videos.items():
        name = f'<a href="#video-{e(vid)}">{e(vid)}</a>' if vid in uris and vid != "roc" else e(vid)
        out.append(
            f"<tr><td>{name}</td><td class=\"num\">{_int(v.get('frames'))}</td>"
            f"<td class=\"num\">{_int(v.get('frames_scored'))}</td>"
            f"<td class=\"num\">{_int(v.get('abnormal'))}</td><td class=\"num\">{_pct(v.get('auc'))}</td></tr>"
        )
    out.append("</table>")
    out.append('<p class="note">AUC n/a: the video has one class only (or no labels) and is left out of '
               "the macro mean.</p></section>")
    return out


def _img(uri: str, alt: str) -> str:
    return f'<img src="{html.escape(uri)}" alt="{html.escape(alt)}">'


def _data_uri(name: str, img: str | Path | bytes) -> str:
    if isinstance(img, str) and img.startswith(_DATA_PREFIX):
        return img
    data = img if isinstance(img, bytes) else Path(img).read_bytes()
    if not data.startswith(_PNG_MAGIC):
        raise ValueError(f"image {name!r} is not a PNG; give PNG bytes, a .png path or a data URI")
    return _DATA_PREFIX + base64.b64encode(data).decode("ascii")
