"""Leaderboards from a model_info tree: Markdown, a self-contained HTML page, or JSON.

RobustBench's own layout works unchanged: ``model_info/{dataset}/{threat_model}/{Name}.json``.
Other trees are read recursively; dataset and threat model then come from the files.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import ConfigError
from zoo.fileio import read_json

from .results import EVALUATION_KEY
from .threat_models import THREAT_MODELS

FORMATS = ("md", "html", "json")
SORT_FIELD = "autoattack_acc"  # what RobustBench sorts its Linf / L2 / L1 leaderboards by


@dataclass
class Row:
    """One model of a leaderboard."""

    key: str
    dataset: str
    threat_model: str
    info: dict
    path: Path

    @property
    def clean(self) -> float:
        return float(self.info["clean_acc"])

    @property
    def robust(self) -> float:
        return float(self.info[SORT_FIELD])


def read_tree(root: str | os.PathLike, dataset: str | None = None, threat_model: str | None = None) -> list[Row]:
    """Read every model_info JSON under ``root`` matching the filters."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"leaderboard folder {root} does not exist")
    rows = []
    for path in sorted(root.rglob("*.json")):
        info = read_json(path, "model_info file")
        if not isinstance(info, dict) or SORT_FIELD not in info:
            continue  # not a model_info file (e.g. a config or a corruptions result)
        parts = path.relative_to(root).parts
        ds = next((p for p in parts[:-1] if p in NUM_CLASSES), None) or info.get("dataset")
        tm = (next((p for p in parts[:-1] if p in THREAT_MODELS), None)
              or (info.get(EVALUATION_KEY) or {}).get("threat_model"))
        try:
            float(info["clean_acc"]), float(info[SORT_FIELD])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: clean_acc and {SORT_FIELD} must be numbers like \"61.04\"") from None
        if (dataset and ds != dataset) or (threat_model and tm != threat_model):
            continue
        rows.append(Row(path.stem, ds or "?", tm or "?", info, path))
    return rows


def zoo_rows(dataset: str | None = None, threat_model: str | None = None) -> list[Row]:
    """The zoo's registry entries as leaderboard rows (their reported figures, RobustBench fields)."""
    from zoo.registry import list_entries

    from .models import architecture_label

    rows = []
    for e in list_entries():
        rep = e.reported
        if "autoattack_acc" not in rep or (dataset and e.dataset != dataset) or (threat_model and e.threat_model != threat_model):
            continue
        info = {"link": e.source.get("link", ""), "name": e.source.get("title", e.name), "authors": e.source.get("authors", ""),
                "additional_data": e.additional_data, "number_forward_passes": 1, "dataset": e.dataset,
                "venue": e.source.get("venue", ""), "architecture": architecture_label(e.architecture), "eps": e.eps,
                "clean_acc": f"{float(rep['clean_acc']):.2f}", "reported": f"{float(rep['autoattack_acc']):.2f}",
                "autoattack_acc": f"{float(rep['autoattack_acc']):.2f}", "footnote": e.footnote, "unreliable": False}
        rows.append(Row(e.name, e.dataset, e.threat_model, info, Path(e.name)))
    return rows


def grouped(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows per (dataset, threat model), each sorted like RobustBench (robust accuracy, descending)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.dataset, row.threat_model), []).append(row)
    return {k: sorted(v, key=lambda r: r.robust, reverse=True) for k, v in sorted(groups.items())}


def _title(row: Row) -> str:
    return (row.info.get("name") or "").strip() or row.key


RANDOMIZED_MARK = "[randomized]"
RANDOMIZED_LEGEND = (f"{RANDOMIZED_MARK}: AutoAttack flags the model as a randomized defense; RobustBench does not "
                     "rank randomized defenses under the standard version.")


def _randomized(row: Row) -> bool:
    return bool((row.info.get(EVALUATION_KEY) or {}).get("randomized"))


def _key(row: Row) -> str:
    return f"{row.key} {RANDOMIZED_MARK}" if _randomized(row) else row.key


def render_markdown(rows: list[Row]) -> str:
    """One Markdown table per (dataset, threat model)."""
    out = []
    for (ds, tm), group in grouped(rows).items():
        eps = group[0].info.get("eps", "")
        out += [f"## {ds} {tm} (eps {eps})", "",
                "| Rank | Model | Paper | Clean acc. | AutoAttack acc. | Reported | Architecture | Extra data | Venue |",
                "|---:|---|---|---:|---:|---:|---|:---:|---|"]
        for i, r in enumerate(group, 1):
            paper = _title(r).replace("|", "\\|")
            link = r.info.get("link") or ""
            paper = f"[{paper}]({link})" if link.startswith(("http://", "https://")) else paper
            out.append(f"| {i} | {_key(r)} | {paper} | {r.info['clean_acc']} | {r.info[SORT_FIELD]} | "
                       f"{r.info.get('reported', '')} | {r.info.get('architecture', '')} | "
                       f"{'yes' if r.info.get('additional_data') else 'no'} | {r.info.get('venue', '')} |")
        if any(_randomized(r) for r in group):
            out += ["", RANDOMIZED_LEGEND]
        out.append("")
    return "\n".join(out) if out else "No results found.\n"


def render_json(rows: list[Row]) -> str:
    """The sorted leaderboards as JSON."""
    return json.dumps([{"dataset": ds, "threat_model": tm,
                        "models": [{"rank": i, "key": r.key, "randomized": _randomized(r),
                                    **{k: v for k, v in r.info.items() if k != EVALUATION_KEY}}
                                   for i, r in enumerate(group, 1)]}
                       for (ds, tm), group in grouped(rows).items()], indent=2)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f3f3f3;cursor:pointer;user-select:none}
td.num{text-align:right}svg{border:1px solid #ddd;background:#fff}.pt{fill:#3465a4;opacity:.8}"""

_JS = """document.querySelectorAll('table.lb').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,col){th.addEventListener('click',function(){
  var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.dataset.asc!=='1';
  t.querySelectorAll('th').forEach(function(h){h.dataset.asc=''});th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,b){var x=a.cells[col].dataset.v||a.cells[col].textContent,y=b.cells[col].dataset.v||b.cells[col].textContent;
   var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c});
  rows.forEach(function(r){body.appendChild(r)});});});});"""


def _scatter(group: list[Row], width: int = 520, height: int = 360) -> str:
    pad = 50
    xs, ys = [r.clean for r in group], [r.robust for r in group]
    x0, x1 = min(xs) - 2, max(xs) + 2
    y0, y1 = min(ys) - 2, max(ys) + 2

    def sx(v):
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v):
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="clean versus robust accuracy">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">clean accuracy (%)</text>',
             f'<text x="14" y="{height / 2}" text-anchor="middle" transform="rotate(-90 14 {height / 2})">'
             f'robust accuracy (%)</text>']
    for v in (x0, (x0 + x1) / 2, x1):
        parts.append(f'<text x="{sx(v):.1f}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{v:.1f}</text>')
    for v in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.1f}</text>')
    for r in group:
        label = html.escape(f"{r.key}: clean {r.info['clean_acc']}, robust {r.info[SORT_FIELD]}")
        parts.append(f'<circle class="pt" cx="{sx(r.clean):.1f}" cy="{sy(r.robust):.1f}" r="5">'
                     f'<title>{label}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(rows: list[Row], title: str = "Robustness leaderboard") -> str:
    """A self-contained page: sortable tables and clean-vs-robust scatter plots (inline SVG)."""
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for (ds, tm), group in grouped(rows).items():
        body.append(f"<h2>{e(ds)} {e(tm)} (eps {e(str(group[0].info.get('eps', '')))})</h2>")
        body.append('<table class="lb"><thead><tr><th>Rank</th><th>Model</th><th>Paper</th><th>Clean acc.</th>'
                    "<th>AutoAttack acc.</th><th>Reported</th><th>Architecture</th><th>Extra data</th><th>Venue</th>"
                    "</tr></thead><tbody>")
        for i, r in enumerate(group, 1):
            link = str(r.info.get("link") or "")
            paper = (f'<a href="{e(link)}">{e(_title(r))}</a>' if link.startswith(("http://", "https://"))
                     else e(_title(r)))
            body.append(f'<tr><td class="num">{i}</td><td>{e(_key(r))}</td><td>{paper}</td>'
                        f'<td class="num">{e(str(r.info["clean_acc"]))}</td>'
                        f'<td class="num">{e(str(r.info[SORT_FIELD]))}</td>'
                        f'<td class="num">{e(str(r.info.get("reported", "")))}</td>'
                        f'<td>{e(str(r.info.get("architecture", "")))}</td>'
                        f'<td>{"yes" if r.info.get("additional_data") else "no"}</td>'
                        f'<td>{e(str(r.info.get("venue", "")))}</td></tr>')
        body.append("</tbody></table>")
        if any(_randomized(r) for r in group):
            body.append(f"<p>{e(RANDOMIZED_LEGEND)}</p>")
        body.append(_scatter(group))
    if len(body) == 1:
        body.append("<p>No results found.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>{_JS}</script></body></html>\n")


def leaderboard(root: str | os.PathLike | None, dataset: str | None = None, threat_model: str | None = None,
                fmt: str = "md", include_zoo: bool = False) -> str:
    """Render the leaderboard of a model_info tree (and/or the zoo's entries) in ``fmt``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if root is None and not include_zoo:
        raise ConfigError("give a model_info folder, --zoo, or both")
    rows = read_tree(root, dataset, threat_model) if root is not None else []
    if include_zoo:
        rows += zoo_rows(dataset, threat_model)
    return {"md": render_markdown, "html": render_html, "json": render_json}[fmt](rows)
