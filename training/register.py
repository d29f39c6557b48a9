"""Turn a finished training run into a zoo entry: evaluate, register, write the card.

The model is evaluated with the harness (clean accuracy and AutoAttack; the
settings are recorded in the result JSON), its model directory is copied where
the registry can find it, and the entry and its model card are written, ready
for ``score-zoo publish NAME --repo-id ORG/NAME``.

- User entries (default): files under ``zoo.registry.user_models_dir()/NAME``,
  the entry in the user registry file; the package is not touched.
- Built-in entries (``builtin=True``, for maintainers): weights under
  ``zoo/bundled/NAME``, the result under ``zoo/entries/evaluations/``, the
  entry in ``zoo/entries/NAME.json`` and the card in ``model_cards/NAME.md``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import harness
from harness.clean import clean_accuracy
from zoo import devices, distributed, registry
from zoo.cards import write_card
from zoo.errors import ConfigError, WriteError
from zoo.fileio import sha256_file, staged_dir, write_error
from zoo.model_dir import CONFIG_NAME, WEIGHTS_NAME, read_config
from zoo.studies import load_study, markdown

PACKAGE_DIR = Path(registry.__file__).parent
# The paper of each training objective: the entry's source (card citation, leaderboard paper column).
OBJECTIVE_PAPERS = {
    "score": {"title": "Robustness and Accuracy Could Be Reconcilable by (Proper) Definition",
              "authors": "Tianyu Pang, Min Lin, Xiao Yang, Jun Zhu, Shuicheng Yan", "venue": "ICML 2022",
              "year": 2022, "link": "https://arxiv.org/abs/2202.10103", "code": "https://github.com/P2333/SCORE"},
    "trades": {"title": "Theoretically Principled Trade-off between Robustness and Accuracy",
               "authors": "Hongyang Zhang, Yaodong Yu, Jiantao Jiao, Eric P. Xing, Laurent El Ghaoui, Michael I. Jordan",
               "venue": "ICML 2019", "year": 2019, "link": "https://arxiv.org/abs/1901.08573"},
    "pgd-at": {"title": "Towards Deep Learning Models Resistant to Adversarial Attacks",
               "authors": "Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu",
               "venue": "ICLR 2018", "year": 2018, "link": "https://arxiv.org/abs/1706.06083"},
    "mart": {"title": "Improving Adversarial Robustness Requires Revisiting Misclassified Examples",
             "authors": "Yisen Wang, Difan Zou, Jinfeng Yi, James Bailey, Xingjun Ma, Quanquan Gu",
             "venue": "ICLR 2020", "year": 2020, "link": "https://openreview.net/forum?id=rklOg6EFwS"},
}
# What the card lists of a run's recipe (the full config stays in config.json).
RECIPE_KEYS = ("semantics", "objective", "distance", "beta", "clip_value", "clip_loss", "label_smoothing",
               "epochs", "batch_size", "lr", "weight_decay", "attack_steps", "attack_step_size", "ema_decay",
               "generated_fraction", "train_subset", "data_dir")


@dataclasses.dataclass
class Registration:
    """What ``register_run`` wrote."""

    entry: registry.Entry
    entry_path: Path
    model_dir: Path
    result_path: Path
    card_path: Path


def _recipe(training: dict) -> dict:
    recipe = training.get("recipe", {})
    out = {k: recipe[k] for k in RECIPE_KEYS if k in recipe and recipe[k] not in ("", None)}
    if not out.get("train_subset"):
        out.pop("train_subset", None)  # 0 = the whole training split
    if "data_dir" in out:
        out["data_dir"] = Path(out["data_dir"]).name
    out["trainer"] = "score-train (this package)"
    return out


def source_paper(recipe: dict) -> dict:
    """The paper an entry cites: SCORE for its objective and for PGD-AT with one of its distances."""
    objective = recipe.get("objective", "score")
    if objective == "pgd-at" and recipe.get("distance", "") not in ("", "KL"):
        return OBJECTIVE_PAPERS["score"]
    return OBJECTIVE_PAPERS[objective]


def check_new_name(name: str, overwrite: bool = False) -> None:
    """Refuse a name that breaks the entry-name rule, or that a zoo entry has already (unless ``overwrite``)."""
    registry.check_name(name)
    if not overwrite and name in {e.name for e in registry.list_entries()}:
        raise ConfigError(f"a zoo entry called '{name}' exists already; pass --overwrite to replace it")


def study_reference(path: str | os.PathLike, builtin: bool) -> str:
    """A ``--study`` file (relative to the working directory), read and rendered now so a wrong one fails before
    any work, as the entry records it: relative to the built-in entries' folder if it is in there, else absolute."""
    path = Path(path).resolve()
    markdown(load_study(path))
    return str(path.relative_to(registry.BUILTIN_DIR)) if builtin and path.is_relative_to(registry.BUILTIN_DIR) \
        else str(path)


def _check_writable(folder: Path) -> None:
    """Refuse a folder that cannot be created or written (the registry's, before the evaluation)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(folder, e) from None
    if not os.access(folder, os.W_OK):
        raise WriteError(f"cannot write {folder}: permission denied; choose a writable registry "
                         f"(${registry.REGISTRY_ENV})")


def register_run(run_dir: str | Path, name: str, *, builtin: bool = False, which: str = "model-best",
                 n_examples: int | None = None, clean_n_examples: int | None = None, data_dir=None,
                 version: str = "standard", attacks: list[str] | None = None, n_iter: int | None = None,
                 seed: int = 0, batch_size: int = 500, device: str | None = None, description: str = "",
                 data_note: str = "", baselines: tuple[str, ...] = (), studies: tuple[str, ...] = (),
                 overwrite: bool = False, progress: bool = True) -> Registration | None:
    """Evaluate ``run_dir/which`` and register it as zoo entry ``name``.

    AutoAttack runs on the first ``n_examples`` test images; clean accuracy is
    measured on the first ``clean_n_examples`` (default: the same images).
    ``studies`` names the multi-seed study files the entry belongs to (its card shows them).
    Everything is checked before the evaluation, and the entry is written last: a failure leaves no
    entry, model directory or card behind. Under torchrun the processes share the evaluation, rank 0
    alone writes the model, entry and card, and the other processes return None.
    """
    source_dir = Path(run_dir) / which
    config = read_config(source_dir)
    check_new_name(name, overwrite)
    for baseline in baselines:
        registry.get_entry(baseline)
    studies = [study_reference(s, builtin) for s in studies]
    threat_model = config.get("threat_model") or "Linf"

    if builtin:
        model_dir = PACKAGE_DIR / "bundled" / name
        result_path = registry.BUILTIN_DIR / "evaluations" / f"{name}.json"
    else:
        model_dir = registry.user_models_dir() / name
        result_path = model_dir.parent / f"{name}.evaluation.json"
        _check_writable(registry.user_registry_path().parent)
    state_dir = Path(run_dir) / f"evaluation-{name}.state"

    with distributed.joined(devices.placement(device)) as group:
        result = harness.evaluate(str(source_dir), config["dataset"], threat_model, config.get("eps"), n_examples,
                                  batch_size=batch_size, version=version, attacks=attacks, seed=seed, device=device,
                                  data_dir=data_dir, out=result_path, state_dir=state_dir, n_iter=n_iter,
                                  model_info={"name": name, "architecture": config["architecture"],
                                              "venue": "SCORE Zoo", "footnote": data_note or None},
                                  progress=progress)
        registration = None
        if group.is_main:
            clean = result.clean_acc
            if clean_n_examples is not None and clean_n_examples != result.evaluation.n_examples:
                clean = clean_accuracy(str(source_dir), config["dataset"], data_dir, clean_n_examples, batch_size, device)

            training = config.get("training", {})
            entry = registry.Entry(
                name=name, dataset=config["dataset"], threat_model=threat_model, eps=result.evaluation.eps_text,
                architecture=config["architecture"], num_classes=config["num_classes"],
                source=source_paper(training.get("recipe", {"objective": training.get("objective", "score")})),
                reported={"clean_acc": round(clean, 2), "autoattack_acc": round(result.robust_acc, 2),
                          "n_examples": result.evaluation.n_examples,
                          "clean_n_examples": clean_n_examples or result.evaluation.n_examples,
                          "attack": f"AutoAttack {version}" + (f" ({','.join(attacks)})" if attacks else "")
                          + (f", {n_iter} iterations" if n_iter else ""),
                          "by": "SCORE Zoo harness", **({"data": data_note} if data_note else {})},
                recipe=_recipe(training), sha256=sha256_file(source_dir / WEIGHTS_NAME),
                local_dir=f"bundled/{name}" if builtin else str(model_dir),
                description=description or f"{training.get('objective', 'SCORE').upper()}-trained {config['architecture']} "
                                           f"on {config['dataset']} ({threat_model} {result.evaluation.eps_text}), "
                                           "trained with score-train.",
                evaluations=[f"evaluations/{result_path.name}" if builtin else str(result_path)],
                baselines=list(baselines), studies=list(studies), builtin=builtin)
            card_path = None
            try:
                with staged_dir(model_dir, overwrite=overwrite) as tmp:
                    for fname in (WEIGHTS_NAME, CONFIG_NAME):
                        shutil.copy2(source_dir / fname, tmp / fname)
                card_path = write_card(entry)
                entry_path = registry.save_entry(entry)  # last: the entry exists only with what it points at
            except BaseException:
                shutil.rmtree(model_dir, ignore_errors=True)
                if card_path is not None:
                    card_path.unlink(missing_ok=True)
                raise
            registration = Registration(entry, entry_path, model_dir, result_path, card_path)
        group.barrier()  # the other processes wait while rank 0 writes
    return registration
