"""Leaderboards ranked as RobustBench ranks them: Markdown, a self-contained HTML page, or JSON.

- Input: a model_info tree (RobustBench's ``model_info/{dataset}/{threat_model}/{Name}.json``
  works as is; other trees are read recursively, dataset and threat model then
  come from the files; harness progress folders ``*.state`` are ignored) and/or
  the zoo's registry entries.
- Ranking, as ``robustbench.utils.ACC_FIELDS``: Linf and L2 (and L1) by
  ``external`` (a stronger, external evaluation such as MALT) where a file has
  it, else ``autoattack_acc``; corruptions by ``corruptions_acc``. Descending;
  ties keep file-name order. Shown as RobustBench shows them: clean, AutoAttack,
  best known robust accuracy (``external`` or AutoAttack), the ``unreliable``
  flag ("Unknown" when a file lacks it), footnotes under the paper.
- Eligibility: a row whose provenance says it is not leaderboard-grade (a
  subset, unofficial data, custom attacks, reduced iterations, a shard; see
  ``zoo.eligibility``) is marked with the reasons and, unless ``together``,
  ranked in a separate table after the leaderboard-grade rows.
- Attack-failure indicators (``harness.diagnostics``): a row whose result warns is
  marked next to its name and in its own column, with the indicators that fired;
  a row without indicators (a RobustBench file, a reported figure, a result
  written without them) says "not checked". The mark never changes the ranking.
- A file that cannot be ranked (not a JSON object, a required key missing or
  not a number) is skipped and named with the reason (``Leaderboard.skipped``).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from zoo.datasets_meta import check_threat_model
from zoo.errors import ConfigError, UnknownNameError, close_matches_hint
from zoo.fileio import read_json

from zoo.results import EVALUATION_KEY, Evaluation, EvaluationResult, as_float

from .cost import passes_text

FORMATS = ("md", "html", "json")
# robustbench.utils.ACC_FIELDS: the first field a file has ranks it.
RANK_FIELDS = {"Linf": ("external", "autoattack_acc"), "L2": ("external", "autoattack_acc"),
               "L1": ("external", "autoattack_acc"), "corruptions": ("corruptions_acc",)}
DATASETS = ("cifar10", "cifar100", "imagenet", "svhn")
STATE_SUFFIX = ".state"   # harness progress folders beside result files


@dataclass
class Row:
    """One ranked model: its model_info fields, the value that ranks it, and why it is not leaderboard-grade."""

    key: str
    dataset: str
    threat_model: str
    info: dict
    source: str                    # the file, or "zoo entry"
    ranked_by: str                 # the field whose value ranks the row
    value: float
    problems: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None   # the provenance behind the figures, if any (its indicators)

    @property
    def eligible(self) -> bool:
        return not self.problems

    @property
    def clean(self) -> float:
        return float(self.info["clean_acc"])

    @property
    def corruptions(self) -> bool:
        return self.threat_model == "corruptions"


@dataclass
class Skipped:
    """A file that could not be ranked."""

    path: str
    reason: str


@dataclass
class Leaderboard:
    """Rows and skipped files of one leaderboard build."""

    rows: list[Row] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _number(info: dict, key: str) -> float:
    number = as_float(info[key])
    if number is None:
        raise ValueError(f"{key} is not a number ({info[key]!r})")
    return number


def rank_value(info: dict, threat_model: str) -> tuple[str, float]:
    """(field, value) that ranks a model_info dict on a ``threat_model`` leaderboard, as RobustBench ranks.

    An empty or null ``external`` counts as absent. Raises ``ValueError`` naming the problem.
    """
    for key in RANK_FIELDS[threat_model]:
        if info.get(key) not in (None, ""):
            return key, _number(info, key)
    raise ValueError(f"lacks {' and '.join(RANK_FIELDS[threat_model])}")


def _row(key: str, info: dict, source: str, dataset: str | None, threat_model: str | None,
         problems: list[str], evaluation: Evaluation | None = None) -> Row:
    """Validate one model_info dict into a row; ``ValueError`` names what is wrong."""
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    if dataset is None:
        raise ValueError("no dataset (put it under model_info/DATASET/THREAT_MODEL/ or give a 'dataset' key)")
    if threat_model is None:
        raise ValueError("no threat model (put it under model_info/DATASET/THREAT_MODEL/ or give evaluation.threat_model)")
    if "clean_acc" not in info:
        raise ValueError("lacks clean_acc")
    _number(info, "clean_acc")
    ranked_by, value = rank_value(info, threat_model)
    return Row(key, dataset, threat_model, info, source, ranked_by, value, problems, evaluation)


def read_tree(root: str | os.PathLike, dataset: str | None = None, threat_model: str | None = None) -> Leaderboard:
    """Read every model_info JSON under ``root`` matching the filters; name the files that cannot be ranked."""
    from zoo.eligibility import problems

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"leaderboard folder {root} does not exist")
    board = Leaderboard()
    for path in sorted(root.rglob("*.json")):
        parts = path.relative_to(root).parts[:-1]
        if any(p.endswith(STATE_SUFFIX) for p in parts):
            continue
        try:
            info = read_json(path, "model_info file")
        except ConfigError as e:  # "model_info file PATH is not valid JSON (...)"
            board.skipped.append(Skipped(str(path), str(e).split(f"{path} ", 1)[-1].removeprefix("is ")))
            continue
        try:   # a harness result carries its provenance; a RobustBench model_info file has none
            evaluation = (EvaluationResult.from_dict(info, str(path)).evaluation
                          if isinstance(info, dict) and EVALUATION_KEY in info else None)
        except ConfigError as e:   # "PATH has ..." / "PATH is ..."
            board.skipped.append(Skipped(str(path), str(e).split(f"{path} ", 1)[-1]))
            continue
        ds = next((p for p in parts if p in DATASETS), None) or (info.get("dataset") if isinstance(info, dict) else None)
        tm = next((p for p in parts if p in RANK_FIELDS), None) or (evaluation.threat_model if evaluation else None)
        if (dataset and ds != dataset) or (threat_model and tm != threat_model):
            continue
        try:
            board.rows.append(_row(path.stem, info, str(path), ds, tm, problems(evaluation, ds) if evaluation else [],
                                   evaluation))
        except ValueError as e:
            board.skipped.append(Skipped(str(path), str(e)))
    return board


def zoo_rows(dataset: str | None = None, threat_model: str | None = None) -> list[Row]:
    """The zoo's registry entries as rows (their reported figures, RobustBench fields, eligibility)."""
    from zoo.evaluations import entry_evaluations
    from zoo.eligibility import backing_evaluation, entry_problems
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
        results = entry_evaluations(e)
        rows.append(_row(e.name, info, "zoo entry", e.dataset, e.threat_model, entry_problems(e, results),
                         backing_evaluation(e, results)))
    return rows


def ranked(rows: list[Row], together: bool = False) -> dict[tuple[str, str], tuple[list[Row], list[Row]]]:
    """Per (dataset, threat model): (ranked rows, ranked rows that are not leaderboard-grade).

    Rows sort by their ranking value, descending; Python's sort is stable, so
    ties keep their input (file-name) order, as in RobustBench. With
    ``together`` every row is in the first list and the second is empty.
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.dataset, row.threat_model), []).append(row)
    out = {}
    for key, group in sorted(groups.items()):
        order = sorted(group, key=lambda r: r.value, reverse=True)
        out[key] = (order, []) if together else ([r for r in order if r.eligible], [r for r in order if not r.eligible])
    return out


# ---------------------------------------------------------------- rendering --

def _title(row: Row) -> str:
    return (row.info.get("name") or "").strip() or row.key


RANDOMIZED_MARK = "[randomized]"
RANDOMIZED_LEGEND = (f"{RANDOMIZED_MARK}: AutoAttack flags the model as a randomized defense; RobustBench does not "
                     "rank randomized defenses under the standard version.")


def _randomized(row: Row) -> bool:
    return bool((row.info.get(EVALUATION_KEY) or {}).get("randomized"))


WARNING_MARK = "[indicators warn]"
NOT_CHECKED = "not checked"


def _flagged(row: Row) -> bool:
    """Whether the attack-failure indicators of the row's result warn."""
    return row.evaluation is not None and row.evaluation.diagnostics_verdict() == "warning"


def _diagnostics(row: Row) -> str:
    """The row's indicator verdict in words (ok, warning with the indicators, not checked)."""
    return row.evaluation.diagnostics_text() if row.evaluation is not None else NOT_CHECKED


def _diagnostics_legend(group: list[Row]) -> list[str]:
    """The lines explaining the warning marks and "not checked" of one leaderboard (none for corruptions)."""
    if group[0].corruptions:
        return []
    lines = []
    flagged = [r for r in group if _flagged(r)]
    if flagged:
        lines.append(f"{WARNING_MARK}: the attack-failure indicators warn for "
                     + "; ".join(f"{r.key} ({', '.join(r.evaluation.fired_indicators())})" for r in flagged)
                     + ": such a robust accuracy is not a robustness claim (docs/diagnostics.md); it ranks by its "
                       "figure all the same.")
    if any(_diagnostics(r) == NOT_CHECKED for r in group):
        lines.append(f"{NOT_CHECKED}: no attack-failure indicators behind the figure (a RobustBench file, a "
                     "reported figure, or a result written without them).")
    return lines


def _best_known(row: Row) -> str:
    """RobustBench's "best known robust accuracy": ``external`` where given, else the ranking field."""
    external = row.info.get("external")
    return str(external) if external not in (None, "") else str(row.info[row.ranked_by])


def _unreliable(row: Row) -> str:
    return "Unknown" if "unreliable" not in row.info else ("yes" if row.info["unreliable"] else "no")


def _heading(ds: str, tm: str, group: list[Row]) -> str:
    eps = group[0].info.get("eps")
    return f"{ds} {tm}" + (f" (eps {eps})" if eps not in (None, "") else "")


def _columns(corruptions: bool, marked: bool) -> list[str]:
    cols = ["Rank", "Model", "Paper", "Clean acc."]
    cols += ["Corruptions acc."] if corruptions else ["AutoAttack acc.", "Best known acc.", "AA eval. potentially unreliable",
                                                      "Attack-failure indicators"]
    cols += ["Extra data", "Architecture", "Venue"]
    return cols + (["Not leaderboard-grade because"] if marked else [])


def _cells(rank: int, row: Row, marked: bool) -> list[str]:
    """The plain-text cells of one row (paper and footnote are rendered by each format)."""
    marks = [RANDOMIZED_MARK] * _randomized(row) + [WARNING_MARK] * _flagged(row)
    cells = [str(rank), " ".join([row.key, *marks]), "", str(row.info["clean_acc"])]
    cells += [str(row.info[row.ranked_by])] if row.corruptions else [
        str(row.info.get("autoattack_acc", "")), _best_known(row), _unreliable(row), _diagnostics(row)]
    cells += ["yes" if row.info.get("additional_data") else "no", str(row.info.get("architecture", "")),
              str(row.info.get("venue", ""))]
    return cells + (["; ".join(row.problems)] if marked else [])


def _tables(rows: list[Row], together: bool):
    """(heading, [(table title or None, rows, marked)]) per leaderboard."""
    for (ds, tm), (main, apart) in ranked(rows, together).items():
        tables = [(None, main, together and any(not r.eligible for r in main))] if main else []
        if apart:
            tables.append(("Not leaderboard-grade (ranked apart)", apart, True))
        yield ds, tm, main + apart, tables


RANKING_NOTE = {
    False: "Ranked by the best known robust accuracy: `external` (a stronger evaluation) where given, else AutoAttack, as RobustBench ranks.",
    True: "Ranked by robust accuracy under common corruptions (`corruptions_acc`), as RobustBench ranks.",
}


def render_markdown(board: Leaderboard, together: bool = False) -> str:
    """One Markdown section per (dataset, threat model); rows not leaderboard-grade in their own table."""
    out = []
    for ds, tm, group, tables in _tables(board.rows, together):
        out += [f"## {_heading(ds, tm, group)}", "", RANKING_NOTE[group[0].corruptions].replace("`", ""), ""]
        for title, rows, marked in tables:
            if title:
                out += [f"### {title}", ""]
            cols = _columns(group[0].corruptions, marked)
            out += ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c == "Rank" else "---" for c in cols) + "|"]
            for rank, row in enumerate(rows, 1):
                cells = [c.replace("|", "\\|") for c in _cells(rank, row, marked)]
                paper = _title(row).replace("|", "\\|")
                link = str(row.info.get("link") or "")
                cells[2] = f"[{paper}]({link})" if link.startswith(("http://", "https://")) else paper
                if row.info.get("footnote"):
                    cells[2] += "<br>*" + str(row.info["footnote"]).replace("|", "\\|") + "*"
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        if any(_randomized(r) for r in group):
            out += [RANDOMIZED_LEGEND, ""]
        for line in _diagnostics_legend(group):
            out += [line, ""]
    if not out:
        skipped = f" ({len(board.skipped)} file(s) skipped)" if board.skipped else ""
        return f"No results found{skipped}.\n"
    return "\n".join(out)


def _json_row(rank: int, row: Row) -> dict:
    return {"rank": rank, "key": row.key, "source": row.source, "ranked_by": row.ranked_by,
            "best_known_acc": _best_known(row), "leaderboard_grade": row.eligible, "randomized": _randomized(row),
            "not_leaderboard_grade_because": row.problems, "diagnostics": _json_diagnostics(row),
            **{k: v for k, v in row.info.items() if k != EVALUATION_KEY}}


def _json_diagnostics(row: Row) -> dict:
    """The row's indicator verdict (null: not checked), the indicators that warn, and the verdict in words."""
    ev = row.evaluation
    return {"verdict": ev.diagnostics_verdict() if ev else None, "indicators": ev.fired_indicators() if ev else [],
            "summary": _diagnostics(row)}


def render_json(board: Leaderboard, together: bool = False) -> str:
    """The ranked leaderboards, the rows ranked apart, and the skipped files, as JSON."""
    boards = []
    for (ds, tm), (main, apart) in ranked(board.rows, together).items():
        boards.append({"dataset": ds, "threat_model": tm, "eps": (main + apart)[0].info.get("eps"),
                       "ranked_by": list(RANK_FIELDS[tm]), "models": [_json_row(i, r) for i, r in enumerate(main, 1)],
                       "not_leaderboard_grade": [_json_row(i, r) for i, r in enumerate(apart, 1)]})
    return json.dumps({"leaderboards": boards, "skipped": [{"path": s.path, "reason": s.reason} for s in board.skipped]},
                      indent=2)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f3f3f3;cursor:pointer;user-select:none}
td.num{text-align:right}.note{font-size:.85em;color:#555}tr.apart td{color:#666}tr.warn td{background:#fbe3c0}
svg{border:1px solid #ddd;background:#fff}.pt{fill:#3465a4;opacity:.85}.pt.apart{fill:#fff;stroke:#c4553a;stroke-width:2}"""

_JS = """document.querySelectorAll('table.lb').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,col){th.addEventListener('click',function(){
  var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.dataset.asc!=='1';
  t.querySelectorAll('th').forEach(function(h){h.dataset.asc=''});th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,b){var x=a.cells[col].dataset.v||a.cells[col].textContent,y=b.cells[col].dataset.v||b.cells[col].textContent;
   var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c});
  rows.forEach(function(r){body.appendChild(r)});});});});"""


def _scatter(group: list[Row], width: int = 520, height: int = 360) -> str:
    """Clean vs. ranking accuracy, one point per row (hollow: not leaderboard-grade)."""
    pad = 50
    xs, ys = [r.clean for r in group], [r.value for r in group]
    x0, x1 = min(xs) - 2, max(xs) + 2
    y0, y1 = min(ys) - 2, max(ys) + 2

    def sx(v):
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v):
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    y_label = "corruptions accuracy (%)" if group[0].corruptions else "best known robust accuracy (%)"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="clean versus robust accuracy">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">clean accuracy (%)</text>',
             f'<text x="14" y="{height / 2}" text-anchor="middle" transform="rotate(-90 14 {height / 2})">'
             f'{y_label}</text>']
    for v in (x0, (x0 + x1) / 2, x1):
        parts.append(f'<text x="{sx(v):.1f}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{v:.1f}</text>')
    for v in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.1f}</text>')
    if any(not r.eligible for r in group):
        parts.append(f'<circle class="pt key" cx="{pad + 8}" cy="{pad - 22}" r="5"/><text x="{pad + 18}" y="{pad - 18}" '
                     f'font-size="11">leaderboard-grade</text><circle class="pt apart key" cx="{pad + 138}" cy="{pad - 22}" '
                     f'r="5"/><text x="{pad + 148}" y="{pad - 18}" font-size="11">not leaderboard-grade</text>')
    for r in group:
        label = html.escape(f"{r.key}: clean {r.info['clean_acc']}, {r.ranked_by} {r.info[r.ranked_by]}")
        parts.append(f'<circle class="pt{"" if r.eligible else " apart"}" cx="{sx(r.clean):.1f}" cy="{sy(r.value):.1f}" '
                     f'r="5"><title>{label}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(board: Leaderboard, together: bool = False, title: str = "Robustness leaderboard") -> str:
    """A self-contained page: sortable tables and clean-vs-robust scatter plots (inline SVG)."""
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for ds, tm, group, tables in _tables(board.rows, together):
        body += [f"<h2>{e(_heading(ds, tm, group))}</h2>", f'<p class="note">{e(RANKING_NOTE[group[0].corruptions].replace("`", ""))}</p>',
                 _scatter(group)]
        for table_title, rows, marked in tables:
            if table_title:
                body.append(f"<h3>{e(table_title)}</h3>")
            kind = "lb apart" if table_title else "lb"
            body.append(f'<table class="{kind}" data-dataset="{e(ds)}" data-threat-model="{e(tm)}"><thead><tr>'
                        + "".join(f"<th>{e(c)}</th>" for c in _columns(group[0].corruptions, marked))
                        + "</tr></thead><tbody>")
            for rank, row in enumerate(rows, 1):
                cells = [e(c) for c in _cells(rank, row, marked)]
                link = str(row.info.get("link") or "")
                cells[2] = (f'<a href="{e(link)}">{e(_title(row))}</a>' if link.startswith(("http://", "https://"))
                            else e(_title(row)))
                if row.info.get("footnote"):
                    cells[2] += f'<br><span class="note">{e(str(row.info["footnote"]))}</span>'
                if row.evaluation is not None and row.evaluation.cost:
                    cells[2] += f'<br><span class="note">cost: {e(passes_text(row.evaluation.cost["total"]))}</span>'
                numeric = {0, 3, 4, 5} if not row.corruptions else {0, 3, 4}
                classes = " ".join(["apart"] * (not row.eligible) + ["warn"] * _flagged(row))
                body.append(f'<tr class="{classes}" data-key="{e(row.key)}">'
                            + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                      for i, c in enumerate(cells)) + "</tr>")
            body.append("</tbody></table>")
        if any(_randomized(r) for r in group):
            body.append(f'<p class="note">{e(RANDOMIZED_LEGEND)}</p>')
        body += [f'<p class="note">{e(line)}</p>' for line in _diagnostics_legend(group)]
    if len(body) == 1:
        body.append("<p>No results found.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>{_JS}</script></body></html>\n")


RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}


def build(root: str | os.PathLike | None, dataset: str | None = None, threat_model: str | None = None,
          include_zoo: bool = False) -> Leaderboard:
    """The rows of a model_info tree and/or the zoo's entries, with the files skipped."""
    if root is None and not include_zoo:
        raise ConfigError("give a model_info folder, --zoo, or both")
    if threat_model is not None:
        threat_model = check_threat_model(threat_model, tuple(RANK_FIELDS))
    if dataset is not None and dataset not in DATASETS:
        raise UnknownNameError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASETS)}."
                               + close_matches_hint(dataset, DATASETS))
    board = read_tree(root, dataset, threat_model) if root is not None else Leaderboard()
    if include_zoo:
        board.rows += zoo_rows(dataset, threat_model)
    return board


def leaderboard(root: str | os.PathLike | None, dataset: str | None = None, threat_model: str | None = None,
                fmt: str = "md", include_zoo: bool = False, together: bool = False) -> str:
    """Render the leaderboard of a model_info tree (and/or the zoo's entries) in ``fmt``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](build(root, dataset, threat_model, include_zoo), together)
