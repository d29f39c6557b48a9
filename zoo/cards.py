"""Model cards: the Hub README of an entry, generated from the entry + evaluation JSONs.

Nothing here is typed twice: every figure comes from the registry entry
(``reported``, ``recipe``, ``source``, ``hub``...) or from score-harness result
files (RobustBench model_info keys + an ``evaluation`` provenance object), read
as plain data with missing provenance keys tolerated. The YAML front matter is
built with ``huggingface_hub.ModelCardData`` / ``EvalResult`` so the Hub (and
``huggingface_hub.ModelCard``) parse its ``model-index``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from .datasets_meta import NUM_CLASSES, TEST_SIZE
from .eligibility import backing_evaluation, data_problem
from .evaluations import dataset_of, entry_evaluations
from .fileio import atomic_write_text
from .registry import BUILTIN_DIR, Entry, user_models_dir
from .results import NOT_A_CLAIM, EvaluationResult, as_float
from .architectures.robustbench import robustbench_timm_name

CARDS_DIR_NAME = "model_cards"
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
HARNESS = "SCORE Zoo harness"
HF_DATASET_IDS = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn"}



def on_hub(entry: Entry) -> bool:
    """Published entries load with timm from the Hub (``library_name: timm``); the others are plain PyTorch."""
    return bool(entry.hub.get("repo_id"))


def mirror_of(entry: Entry) -> dict:
    """What an entry mirroring a RobustBench checkpoint records about it (``origin.mirror``; {} for the others)."""
    return entry.origin.get("mirror") or {}


# --------------------------------------------------------------- evaluations --


def _float(value) -> float | None:
    number = as_float(value)
    return None if number is None else round(number, 2)


def summarize_evaluation(result: EvaluationResult, entry: Entry) -> dict:
    """The figures of one result a card shows."""
    ev = result.evaluation
    return {
        "clean": _float(result.model_info.clean_acc),
        "robust": _float(result.model_info.autoattack_acc),
        "dataset": dataset_of(result, entry),
        "threat_model": ev.threat_model,
        "eps": ev.eps_text,
        "n_examples": ev.n_examples,
        "version": ev.autoattack["version"],
        "attacks": ev.autoattack["attacks"],
        "after": {k: _float(v) for k, v in ev.robust_accuracy_after.items()},
        "seed": ev.seed,
        "device": ev.device,
        "versions": ev.versions,
        "weights_sha256": ev.weights_sha256,
        "started_at": ev.started_at,
        "data_problem": data_problem(ev.data),
        "diagnostics": ev.diagnostics_text(),
        "diagnostics_warn": ev.diagnostics_verdict() == "warning",
    }


# ------------------------------------------------------------- front matter --


def _source_url(entry: Entry) -> str:
    return entry.source.get("link") or entry.source.get("code") or "https://robustbench.github.io"


def test_data(entry: Entry, n: int | None, data_problem: str | None) -> tuple[str, str]:
    """(dataset name, split) of a figure: ``test`` / ``test[:N]`` on the official files, else an unofficial copy."""
    name = DATASET_NAMES.get(entry.dataset, entry.dataset)
    prefix = "" if n in (None, TEST_SIZE.get(entry.dataset)) else f"[:{n}]"
    if data_problem is None:
        return name, f"test{prefix}"
    return f"{name} (unofficial test copy)", f"unofficial-test-copy{prefix}"


def eval_results(entry: Entry, evaluations: list[EvaluationResult]) -> list[EvalResult]:
    """model-index results: the reported figures, then each zoo evaluation (clean + AutoAttack).

    Each figure carries the number of images it was measured on and, for data
    that is not the official test files, an unofficial split name.
    """
    def pair(clean, robust, threat, eps, attack, n, clean_n, data, source_name, source_url):
        def common(count):
            name, split = test_data(entry, count, data)
            return dict(task_type="image-classification", task_name="Image Classification",
                        dataset_type=HF_DATASET_IDS.get(entry.dataset, entry.dataset), dataset_name=name,
                        dataset_split=split, metric_type="accuracy", source_name=source_name, source_url=source_url)

        out = []
        if clean is not None:
            out.append(EvalResult(metric_value=clean, metric_name=f"Clean accuracy ({source_name})",
                                  metric_config="clean", metric_args={"n_examples": clean_n}, **common(clean_n)))
        if robust is not None:
            out.append(EvalResult(metric_value=robust, metric_name=f"AutoAttack accuracy, {threat} eps={eps} ({source_name})",
                                  metric_config=f"{threat}-{eps} {attack}",
                                  metric_args={"threat_model": threat, "eps": str(eps), "n_examples": n, "attack": attack},
                                  **common(n)))
        return out

    rep = entry.reported
    by = rep.get("by", "reported")
    harness_url = entry.source.get("code") or _source_url(entry)
    url = ("https://robustbench.github.io" if "robustbench" in by.lower()
           else harness_url if by == HARNESS else _source_url(entry))
    backing = backing_evaluation(entry, evaluations)
    results = pair(_float(rep.get("clean_acc")), _float(rep.get("autoattack_acc")), entry.threat_model, entry.eps,
                   rep.get("attack", "AutoAttack standard"), rep.get("n_examples"),
                   rep.get("clean_n_examples") or rep.get("n_examples"),
                   data_problem(backing.data) if backing else None, by, url)
    for result in evaluations:
        s = summarize_evaluation(result, entry)
        results += pair(s["clean"], s["robust"], s["threat_model"], s["eps"], f"AutoAttack {s['version']}",
                        s["n_examples"], s["n_examples"], s["data_problem"], HARNESS, harness_url)
    unique = {}  # the reported figure is often one of the evaluations: list it once
    for r in results:
        unique.setdefault((r.metric_config, r.metric_value, r.dataset_split, r.source_name), r)
    return list(unique.values())


def card_data(entry: Entry, evaluations: list[EvaluationResult]) -> ModelCardData:
    """The Hub metadata (YAML front matter) of an entry's card."""
    tags = ["adversarial-robustness", "robustbench", "image-classification", "score", "safetensors",
            "score-zoo", entry.dataset, f"{entry.threat_model.lower()}-robustness", entry.architecture]
    if mirror_of(entry):  # the authors' weights, not a SCORE model; tag the RobustBench architecture label
        tags[3] = "robustbench-mirror"
        tags[-1] = entry.architecture.split(":", 1)[-1].lower()
    if on_hub(entry):
        tags.insert(0, "timm")
    return ModelCardData(
        license=entry.license, library_name="timm" if on_hub(entry) else "pytorch",
        pipeline_tag="image-classification", tags=tags,
        datasets=[HF_DATASET_IDS.get(entry.dataset, entry.dataset)], metrics=["accuracy"],
        model_name=entry.name, eval_results=eval_results(entry, evaluations),
    )


# -------------------------------------------------------------------- body --


def bibtex(entry: Entry) -> str:
    """A BibTeX record built from ``entry.source``."""
    src = entry.source
    authors = [a.strip() for a in src.get("authors", "").split(",") if a.strip()]
    first = authors[0].split()[-1].lower() if authors else "anonymous"
    title = src.get("title", entry.name).strip()
    word = next((w for w in re.findall(r"[A-Za-z]+", title.lower()) if w not in {"a", "an", "the", "on", "of"}), "model")
    year = src.get("year", "")
    venue = src.get("venue", "")
    booktitle = re.sub(r"\s*\d{4}$", "", venue)
    booktitle = {"ICML": "International Conference on Machine Learning (ICML)",
                 "NeurIPS": "Advances in Neural Information Processing Systems (NeurIPS)",
                 "ICLR": "International Conference on Learning Representations (ICLR)"}.get(booktitle, booktitle)
    lines = [f"@inproceedings{{{first}{year}{word},", f"  title     = {{{title}}},",
             f"  author    = {{{' and '.join(authors)}}},", f"  booktitle = {{{booktitle}}},", f"  year      = {{{year}}},"]
    if src.get("link"):
        lines.append(f"  url       = {{{src['link']}}},")
    return "\n".join(lines) + "\n}"


def _acc(value) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _interop_section(entry: Entry) -> list[str]:
    """timm (published entries) and RobustBench (entries RobustBench lists) snippets."""
    lines = []
    if on_hub(entry):
        how = ("registers the mirror under its RobustBench name; timm then gets the registry's pinned, "
               "sha256-checked weights" if mirror_of(entry) else "registers its architectures; timm does not check "
               "the sha256")
        lines += [f"With timm (importing `zoo` {how}):", "",
                  "```python", "import timm", "import zoo  # noqa: F401", "",
                  f'model = timm.create_model("hf-hub:{entry.hub["repo_id"]}", pretrained=True).eval()', "```", ""]
    if entry.robustbench_id:
        name, dataset, threat = entry.robustbench_id
        lines += ["With RobustBench's `load_model` signature (the weights `zoo.load_model` gets):", "",
                  "```python", "from harness import load_model", "",
                  f'model = load_model("{name}", dataset="{dataset}", threat_model="{threat}")', "```", ""]
        if on_hub(entry):
            lines += ["`robustbench.utils.load_model` itself returns these weights too once `zoo` is imported "
                      f"(through timm, as `{robustbench_timm_name(entry)}`).", ""]
    return lines


def _weights_section(entry: Entry) -> list[str]:
    lines = ["## Weights", ""]
    local = entry.local_path()
    if on_hub(entry):
        rev = entry.hub.get("revision")
        lines.append(f"- Hub: [`{entry.hub['repo_id']}`](https://huggingface.co/{entry.hub['repo_id']})"
                     + (f", pinned revision `{rev}`" if rev else ""))
    elif local is not None and entry.builtin:
        lines.append(f"- Bundled in the `score-zoo` package (`zoo/{entry.local_dir}/`): `score-zoo load {entry.name}` "
                     "uses it as it is, with no download.")
    elif local is not None:
        lines.append(f"- A local model directory: `{local}`.")
    else:
        lines.append("- Not on the Hub yet: `score-zoo load` imports the authors' original checkpoint (falling back "
                     "to RobustBench's Google Drive copy) and trusts its hash on first use, until it is published.")
    if entry.sha256:
        when = "every download" if on_hub(entry) else "every load"
        lines.append(f"- `model.safetensors` sha256: `{entry.sha256}` (checked on {when})")
    if entry.origin.get("url"):
        lines.append(f"- Original checkpoint: <{entry.origin['url']}>")
    if entry.robustbench_id:
        name, dataset, threat = entry.robustbench_id
        lines.append(f"- RobustBench: `{name}` ({dataset}, {threat})")
    return lines + [""]


def _mirror_section(entry: Entry) -> list[str]:
    """What a mirror is: the authors' weights as RobustBench distributes them, converted unchanged."""
    mirror = mirror_of(entry)
    if not mirror:
        return []
    name, dataset, threat = entry.robustbench_id
    rep = entry.reported
    files = ", ".join(f"`{c['file']}` (Google Drive id `{c['gdrive_id']}`, sha256 `{c['sha256']}`)"
                      for c in mirror.get("checkpoints", []))
    lines = ["## A mirror of the authors' weights", "",
             f"These are the weights the authors released, as RobustBench distributes them (model `{name}`, "
             f"{dataset}, {threat}), converted unchanged from RobustBench's checkpoint to safetensors. SCORE Zoo did "
             "not train or modify them. The network is RobustBench's own model definition "
             f"(robustbench {mirror.get('robustbench_version', '')}), so loading needs `robustbench` installed "
             "(`pip install 'score-zoo[robustbench]'`).", "",
             f"- RobustBench checkpoint: {files}",
             f"- RobustBench's figures (`model_info/{dataset}/{threat}/{name}.json`, full test set): clean "
             f"{_acc(rep.get('clean_acc'))}%"
             + "".join(f", {label} {_acc(rep[key])}%" for key, label in
                       (("autoattack_acc", "AutoAttack"), ("external", "best known (external evaluation)"),
                        ("corruptions_acc", "corruptions")) if rep.get(key) is not None),
             f"- Additional training data: {'yes' if entry.additional_data else 'no'}"]
    if entry.footnote:
        lines.append(f"- RobustBench's footnote: {entry.footnote}")
    if rep.get("unreliable"):
        lines.append("- RobustBench marks this evaluation as unreliable.")
    lines.append("- License: RobustBench records none; the authors' terms apply (see the paper's code release).")
    check = mirror.get("clean_check")
    if check:
        data = data_problem(check["data"]) or f"the official test files ({check['data']['source']})"
        verdict = "consistent with" if check["consistent"] else "NOT consistent with"
        lines += ["", "Clean accuracy re-measured while mirroring: "
                  f"{check['correct']}/{check['n_examples']} = {check['clean_acc']:.2f}% on the first "
                  f"{check['n_examples']} test images ({data}); {check['confidence']:.0%} {check['method']} interval "
                  f"[{check['interval'][0]:.2f}%, {check['interval'][1]:.2f}%], {verdict} RobustBench's "
                  f"{check['reported_clean_acc']:.2f}%."]
    return lines + [""]


def _examples(rep: dict) -> str:
    """'10000', or '10000 / 1000' when clean and AutoAttack accuracy used different prefixes."""
    n, clean_n = rep.get("n_examples", "-"), rep.get("clean_n_examples")
    return f"{clean_n} / {n}" if clean_n not in (None, n) else str(n)


def _test_name(entry: Entry, problem: str | None) -> str:
    name = DATASET_NAMES.get(entry.dataset, entry.dataset)
    return f"{name} test" if problem is None else f"{name} test copy (unofficial)"


def _results_section(entry: Entry, evaluations: list[EvaluationResult]) -> list[str]:
    rep = entry.reported
    backing = backing_evaluation(entry, evaluations)
    lines = ["## Results", "",
             "| source | dataset | threat model | examples (clean / AA) | clean (%) | AutoAttack (%) |",
             "|---|---|---|---|---|---|",
             f"| {rep.get('by', 'reported')} | {_test_name(entry, data_problem(backing.data) if backing else None)} | "
             f"{entry.threat_model} {entry.eps}".rstrip() + f" | {_examples(rep)} | {_acc(rep.get('clean_acc'))} | "
             f"{_acc(rep.get('autoattack_acc'))} |"]
    for result in evaluations:
        s = summarize_evaluation(result, entry)
        lines.append(f"| SCORE Zoo harness (AutoAttack {s['version']}) | {_test_name(entry, s['data_problem'])} "
                     f"| {s['threat_model']} {s['eps']} | {s['n_examples'] or '-'} | {_acc(s['clean'])} | {_acc(s['robust'])} |")
    for i, result in enumerate(evaluations, 1):
        s = summarize_evaluation(result, entry)
        lines += ["", f"Zoo evaluation {i}:",
                  f"- attack-failure indicators: {s['diagnostics']}"
                  + (f": {NOT_A_CLAIM}" if s["diagnostics_warn"] else "")]
        if s["after"]:
            lines.append("- robust accuracy after each attack: "
                         + ", ".join(f"{k} {_acc(v)}" for k, v in s["after"].items()))
        details = {"seed": s["seed"], "device": s["device"], "started": s["started_at"],
                   "weights sha256": s["weights_sha256"],
                   "versions": ", ".join(f"{k} {v}" for k, v in s["versions"].items()) or None}
        lines += [f"- {k}: {v}" for k, v in details.items() if v not in (None, "")]
    if rep.get("data"):
        lines += ["", f"Data: {rep['data']}"]
    return lines + [""] + _comparison_section(entry)


def _comparison_section(entry: Entry) -> list[str]:
    """A table of this entry next to its baselines (same budget, other objective)."""
    if not entry.baselines:
        return []
    from .registry import get_entry

    rows = [entry] + [get_entry(name) for name in entry.baselines]
    lines = ["## Comparison with baselines", "",
             "| entry | objective | architecture | examples (clean / AA) | clean (%) | AutoAttack (%) |",
             "|---|---|---|---|---|---|"]
    for e in rows:
        lines.append(f"| {e.name} | {e.recipe.get('objective', '-')} | {e.architecture} | {_examples(e.reported)} "
                     f"| {_acc(e.reported.get('clean_acc'))} | {_acc(e.reported.get('autoattack_acc'))} |")
    return lines + [""]


def _study_section(entry: Entry) -> list[str]:
    """The entry's multi-seed studies: per-seed results, mean ± std per objective and the paired difference."""
    if not entry.studies:
        return []
    from .studies import load_study, markdown

    lines = ["## Seeds", ""]
    for name in entry.studies:
        path = Path(name)
        study = load_study(path if path.is_absolute() else BUILTIN_DIR / path)
        lines += [f"### {path.stem}", "", study.get("description", ""), "", markdown(study), "",
                  f"Data: {study['data']}", ""]
    return lines


def render_body(entry: Entry, evaluations: list[EvaluationResult]) -> str:
    """The Markdown body of the card."""
    ds = DATASET_NAMES.get(entry.dataset, entry.dataset)
    src = entry.source
    lines = [f"# {entry.name}", "", entry.description or f"{entry.architecture} on {ds} ({entry.threat_model} {entry.eps}).", ""]
    if src.get("title"):
        lines += [f"From *{src['title']}* ({src.get('authors', '')}, {src.get('venue', '')})"
                  + (f", {src['link']}" if src.get("link") else "") + ".", ""]
    lines += _mirror_section(entry)
    lines += [
        "## Use", "",
        "```bash", f"score-zoo load {entry.name}", "```", "",
        "```python",
        "import zoo",
        "",
        f'model = zoo.load_model("{entry.name}")  # sha256-verified, eval mode',
        "# inputs: float tensors in [0, 1], shape (N, 3, 32, 32); normalisation is inside the model",
        f"logits = model(x)  # (N, {entry.num_classes or NUM_CLASSES.get(entry.dataset)})",
        "```", "",
        f"Architecture `{entry.architecture}`, {entry.num_classes} classes, input normalisation inside the model.", "",
    ]
    lines += _interop_section(entry)
    lines += _weights_section(entry)
    lines += _results_section(entry, evaluations)
    lines += _study_section(entry)
    lines += [] if not entry.eps else [  # an Lp threat model (RobustBench's corruptions have no eps)
        "## Evaluation protocol", "",
        f"AutoAttack (standard version: APGD-CE, APGD-T, FAB-T, Square) under the {entry.threat_model} threat model "
        f"with eps = {entry.eps}, on the first N images of the {ds} test set in their original order "
        "(RobustBench conventions; leaderboard figures use the full test set of 10,000 images). "
        "Reproduce with:", "",
        "```bash",
        f"score-harness evaluate {entry.name} --threat-model {entry.threat_model} --eps {entry.eps} "
        f"--n-examples 10000 --out {entry.name}.json",
        "```", "",
        f"and add the result to the card with `score-zoo card {entry.name} --eval {entry.name}.json`.", "",
    ]
    if entry.recipe:
        lines += ["## Training recipe", ""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in entry.recipe.items()]
        if entry.footnote:
            lines += ["", entry.footnote]
        lines.append("")
    budget = f"{entry.threat_model} perturbations of size {entry.eps}" if entry.eps else entry.threat_model
    lines += [
        "## Limitations", "",
        f"- Robustness is measured only for {budget} on {ds}-sized "
        "32x32 images; it says nothing about other threat models, larger budgets or distribution shift.",
    ] + ([] if not entry.eps else [
        "- AutoAttack accuracy is an empirical upper bound on robust accuracy, not a certificate.",
        "- Clean accuracy is below that of standard (non-robust) training.",
    ]) + [
        f"- The model expects unnormalised RGB inputs in [0, 1]; it was trained on {ds}"
        + (" plus generated images." if "generated_data" in entry.recipe
           else " plus additional data (see the paper)." if entry.additional_data else "."),
        "",
        "## Citation", "", "```bibtex", bibtex(entry), "```", "",
    ]
    return "\n".join(lines)


def render_card(entry: Entry, evaluations: list[EvaluationResult] | None = None) -> str:
    """The full card (YAML front matter + body) for ``entry``; evaluations default to the entry's."""
    evaluations = entry_evaluations(entry) if evaluations is None else evaluations
    return f"---\n{card_data(entry, evaluations).to_yaml()}\n---\n\n{render_body(entry, evaluations)}"


def default_cards_dir(entry: Entry | None = None) -> Path:
    """Where the card of ``entry`` goes: a user entry's beside the user's models (``user_models_dir()``); a
    built-in one's in the repository's ``model_cards/`` (beside the ``zoo`` package) in a source checkout, once
    installed (no pyproject.toml beside the package) in ``model_cards/`` in the current directory, never
    site-packages."""
    if entry is not None and not entry.builtin:
        return user_models_dir()
    checkout = Path(__file__).resolve().parent.parent
    return (checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()) / CARDS_DIR_NAME


def stale_cards(entries: list[Entry], out_dir: str | os.PathLike | None = None,
                extra: list[EvaluationResult] | None = None) -> list[str]:
    """The names of the entries whose card file in ``out_dir`` is missing or differs from a fresh rendering."""
    stale = []
    for entry in entries:
        folder = Path(out_dir) if out_dir else default_cards_dir(entry)
        path = folder / f"{entry.name}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != render_card(entry, entry_evaluations(entry) + list(extra or [])):
            stale.append(entry.name)
    return stale


def write_card(entry: Entry, out_dir: str | os.PathLike | None = None, evaluations: list[EvaluationResult] | None = None) -> Path:
    """Write ``{out_dir}/{name}.md`` atomically; return its path."""
    path = Path(out_dir or default_cards_dir(entry)) / f"{entry.name}.md"
    atomic_write_text(path, render_card(entry, evaluations))
    return path
