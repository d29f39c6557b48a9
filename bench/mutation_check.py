"""Do the tests bite? Apply realistic one-line breaks of the code behind the promises, one at a time, and run the
tests that guard each: a break the tests still pass ("survived") is a hole in the suite.

Each row is (file, old text, new text, test selection). The edit is made in a temporary copy of the tree (never
in this checkout); the copy's tests run with it first on the import path. Run by hand, never by the test suite:

    python bench/mutation_check.py            # every row (about 9 minutes on 2 cores)
    python bench/mutation_check.py 3 7        # rows 3 and 7 only
    python bench/mutation_check.py --list     # the rows

Before the edits, each selection is run once on the unchanged copy: it must pass, or the row is reported as
"broken baseline" (a kill would mean nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PER_ATTACK = "tests/test_harness_per_attack.py::test_each_attack_breaks_what_one_bare_call_breaks_in_order"
EDGES = "tests/test_result_edges.py::"
BPDA = "tests/test_bpda.py::"
DIAG = "tests/test_diagnostics.py::"
EST = "tests/test_estimate.py::"
BOARD = "tests/test_harness_leaderboard.py::"
VERIFY = "tests/test_harness_verification.py::"
MERGED = "tests/test_harness_evaluate.py::test_merged_shards_keep_every_shards_indicators_under_the_worst_verdict"
PASSES = "tests/test_passes.py::"

# (file, old, new, pytest arguments): each old text occurs exactly once in its file.
MUTATIONS = [
    ("harness/threat_models.py", "flat.double().pow(2).sum(dim=1).sqrt()", "flat.double().pow(2).sum(dim=1)",
     ["tests/test_ball_boundary.py", "-k", "L2"]),
    ("harness/threat_models.py", "    return flat.double().abs().sum(dim=1)", "    return flat.abs().amax(dim=1)",
     ["tests/test_ball_boundary.py"]),
    ("harness/engine/checks.py", "return 1e-6 + (1e-5 * eps if", "return 1e-6 + (4e-3 * eps if",
     ["tests/test_ball_boundary.py"]),
    ("harness/threat_models.py", '"standard": ["apgd-ce", "apgd-t", "fab-t", "square"]',
     '"standard": ["apgd-ce", "fab-t", "apgd-t", "square"]',
     [PER_ATTACK + "[Linf]"]),
    ("harness/engine/autoattack_setup.py", "    aa.square.n_queries = n_iter", "    pass",
     [PER_ATTACK + "[L2]"]),
    ("harness/engine/autoattack_setup.py", "attack.n_iter = attack.n_iter_orig = n_iter", "attack.n_iter = n_iter",
     [PER_ATTACK + "[L1]"]),
    ("harness/engine/attack.py", 'if "fab-t" in aa.attacks_to_run[:aa.attacks_to_run.index(attack)]:', "if False:",
     ["tests/test_harness_per_attack.py::test_fab_after_fab_t_keeps_fab_ts_single_restart_as_one_bare_call"]),
    ("harness/engine/autoattack_setup.py", "    aa.fab.n_iter = n_iter", "    pass",
     ["tests/test_harness_per_attack.py::test_fab_after_fab_t_keeps_fab_ts_single_restart_as_one_bare_call"]),
    ("harness/repeats.py", "for r in runs if r.evaluation.per_example",
     "for r in runs[-1:] if r.evaluation.per_example",
     ["tests/test_repeats.py::test_each_example_keeps_its_worst_case_not_the_last_or_any_one_repeat"]),
    ("zoo/fileio.py", """    with atomic_file(path) as f:
        f.write(data)""", """    with open(path, "wb") as f:
        f.write(data)""",
     ["tests/test_durability.py", "-k", "atomic_write_bytes"]),
    ("harness/engine/state.py", "        with atomic_file(self.task_path(task)) as f:",
     '        with open(self.task_path(task), "wb") as f:',
     ["tests/test_durability.py::test_an_evaluation_killed_while_writing_a_state_file_resumes"]),
    ("training/trainer.py", "            self.ema.copy_buffers(self.raw)", "            pass",
     ["tests/test_training_release.py::test_released_average_has_the_live_models_batchnorm_statistics"]),
    ("training/trainer.py",
     """        set_rng_state(ckpt["rng"][min(self.group.rank, len(ckpt["rng"]) - 1)], self.device)\n""", "",
     ["tests/test_training_release.py::test_resume_continues_the_global_random_stream_of_a_model_with_dropout"]),
    ("training/run_state.py", "    with atomic_file(path) as f:", '    with open(path, "wb") as f:',
     ["tests/test_durability.py", "-k", "checkpoint"]),
    ("harness/merge.py", 'key=lambda i: shards[i].evaluation.shard["start"]', "key=lambda i: names[i]",
     [EDGES + "test_eleven_shards_given_in_shell_order_merge_in_example_order"]),
    ("harness/threat_models.py", "if frac.denominator == 255 or 255 % frac.denominator == 0:",
     "if frac.denominator == 255:", [EDGES + "test_linf_eps_is_written_back_as_k_over_255_when_it_is_one"]),
    ("zoo/eligibility.py", 'if evaluation.autoattack.get("n_iter"):',
     'if evaluation.autoattack.get("n_iter") and evaluation.autoattack["n_iter"] < 10:',
     [EDGES + "test_ten_iterations_are_still_reduced_and_the_bundled_subset_is_never_eligible"]),
    ("harness/evaluation.py", '"leaderboard_eligible": official and n_examples is None',
     '"leaderboard_eligible": n_examples is None',
     [EDGES + "test_ten_iterations_are_still_reduced_and_the_bundled_subset_is_never_eligible"]),
    ("harness/beyond.py", 'extra["robust_accuracy"] >= evaluation.robust_accuracy',
     'extra["robust_accuracy"] > evaluation.robust_accuracy',
     [EDGES + "test_external_is_not_set_when_malt_lowers_nothing"]),
    ("harness/threat_models.py", "if is_standard_eps(threat_model, v)), len(eps) - 1)", "if False), len(eps) - 1)",
     [EDGES + "test_robustbench_keys_describe_the_standard_budget_inside_an_eps_list"]),
    ("zoo/checkpoints.py", 'for prefix in ("module.", "_orig_mod."):', 'for prefix in ("module.",):',
     [EDGES + "test_a_torch_compile_checkpoint_imports_with_its_keys_unprefixed"]),
    ("zoo/publish.py", "if entry.sha256 and entry.sha256 != digest:", "if entry.sha256 and not digest:",
     [EDGES + "test_publish_refuses_weights_other_than_the_pinned_ones"]),
    ("zoo/architectures/wideresnet.py", "pad = [out.shape[-1] % 2, 1, out.shape[-2] % 2, 1]", "pad = [1, 1, 1, 1]",
     ["tests/test_architectures.py::test_architecture_gives_robustbenchs_committed_logits"]),
    ("zoo/architectures/preact_resnet.py", "shortcut = self.shortcut(out)", "shortcut = self.shortcut(x)",
     ["tests/test_architectures.py::test_architecture_gives_robustbenchs_committed_logits"]),
    ("harness/bpda.py", "return _Substitute.apply(surrogate, output.detach())",
     "return surrogate + (output - surrogate).detach()", [BPDA + "test_straight_through_keeps_the_forward_exact_and_passes_the_gradient"]),
    ("harness/bpda.py", "approx = plan[name](module) if plan[name] is not None else None", "approx = None",
     [BPDA + "test_an_approximation_gives_its_own_gradient"]),
    ("harness/bpda.py", "        if not torch.is_grad_enabled():", "        if torch.is_grad_enabled():",
     ["tests/test_bpda.py", "-k", "lowers"]),
    ("harness/engine/attack.py", "with bpda_modules(model, settings.bpda if row.through_bpda else ()):",
     "with bpda_modules(model, ()):", [BPDA + "test_evaluate_attacks_through_bpda_after_autoattack_and_says_so"]),
    ("harness/engine/attack.py", "                adv = run_attack(autoattack_for(model, settings, eps, attack, device), attack, x, y)",
     "                with bpda_modules(model, settings.bpda):\n                    adv = run_attack(autoattack_for(model, settings, eps, attack, device), attack, x, y)",
     [BPDA + "test_evaluate_attacks_through_bpda_after_autoattack_and_says_so"]),
    ("harness/evaluation.py", "None if opts.bpda else outcome, n_iter", "outcome, n_iter",
     [BPDA + "test_evaluate_attacks_through_bpda_after_autoattack_and_says_so"]),
    ("harness/extra_attacks.py", "    if BPDA_ATTACK in names:", "    if False:",
     [BPDA + "test_bpda_refuses_what_it_cannot_record_in_one_line"]),
    ("harness/options.py", '"extra_attacks", "bpda"):', '"extra_attacks"):',
     [BPDA + "test_bpda_refuses_what_it_cannot_record_in_one_line"]),
    ("harness/evaluation.py", "        find_modules(net, opts.bpda)", "        pass",
     [BPDA + "test_evaluate_refuses_an_unknown_bpda_name_before_any_work"]),
    ("harness/diagnostics.py", "figure > threshold else OK", "figure >= threshold else OK",
     [DIAG + "test_records_verdicts_and_advice"]),
    ("harness/diagnostics.py", "bad = (flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)",
     "bad = ~torch.isfinite(flat).all(dim=1)", [DIAG + "test_saturated_softmax_is_flagged_by_silent_gradients"]),
    ("harness/diagnostics.py", 'indicator("black-box-beats-white-box", _percent(k, n)',
     'indicator("black-box-beats-white-box", k / n',
     [DIAG + "test_mean_sparse_threshold_is_flagged_by_black_box_beats_white_box"]),
    ("harness/diagnostics.py", 'list(zip(points["eps_text"], points["robust_accuracy"]))[-2:]',
     'list(zip(points["eps_text"], points["robust_accuracy"]))[1:]',
     [DIAG + "test_no_indicator_fires_on_the_bundled_models"]),
    ("harness/diagnostics.py", 'list(zip(points["n_iter"], points["robust_accuracy"]))[-2:]',
     'list(zip(points["n_iter"], points["robust_accuracy"]))[:2]',
     [DIAG + "test_an_attack_still_gaining_with_more_iterations_is_flagged_by_non_convergence"]),
    ("harness/diagnostics.py", "outputs = [model(x) for _ in range(passes)]", "outputs = [model(x)] * passes",
     [DIAG + "test_randomized_model_is_flagged_by_randomness_unless_evaluated_as_rand"]),
    ("harness/leaderboard.py", "[RANDOMIZED_MARK] * _randomized(row) + [WARNING_MARK] * _flagged(row)",
     "[RANDOMIZED_MARK] * _randomized(row)",
     [BOARD + "test_a_row_whose_indicators_warn_is_flagged_in_markdown_and_json_and_ranked_by_its_figure"]),
    ("harness/leaderboard.py", "if row.evaluation is not None else NOT_CHECKED", 'if row.evaluation is not None else "ok"',
     [BOARD + "test_a_row_whose_indicators_warn_is_flagged_in_markdown_and_json_and_ranked_by_its_figure"]),
    ("harness/leaderboard.py", "order = sorted(group, key=lambda r: r.value, reverse=True)",
     "order = sorted(group, key=lambda r: (not _flagged(r), r.value), reverse=True)",
     [BOARD + "test_a_row_whose_indicators_warn_is_flagged_in_markdown_and_json_and_ranked_by_its_figure"]),
    ("harness/leaderboard.py", '"verdict": ev.diagnostics_verdict() if ev else None,',
     '"verdict": ev.diagnostics_verdict() if ev else "ok",',
     [BOARD + "test_zoo_entries_without_indicators_are_not_checked"]),
    ("harness/leaderboard.py", '["apart"] * (not row.eligible) + ["warn"] * _flagged(row)', '["apart"] * (not row.eligible)',
     [BOARD + "test_html_page_flags_a_warning_row_in_headless_chromium"]),
    ("zoo/cards.py", '"diagnostics": ev.diagnostics_text(),', '"diagnostics": ev.diagnostics_verdict(),',
     ["tests/test_cards.py::test_each_evaluation_in_the_card_states_its_attack_failure_verdict"]),
    ("zoo/results.py", '            return "not checked"', '            return "ok"',
     ["tests/test_cards.py::test_each_evaluation_in_the_card_states_its_attack_failure_verdict"]),
    ("harness/verification.py", 'else "CONSISTENT" if self.verified else "FLAGGED"',
     'else "CONSISTENT" if self.consistent else "FLAGGED"',
     [VERIFY + "test_verify_rechecks_the_indicators_and_a_warning_is_no_clean_verification"]),
    ("harness/verification.py", "    if old is not None and new != old:", "    if False:",
     [VERIFY + "test_verify_reports_a_rechecked_verdict_that_differs_from_the_recorded_one"]),
    ("harness/merge.py", '"verdict": WARNING if WARNING in checked else OK', '"verdict": checked[0]', [MERGED]),
    ("zoo/results.py", 'return [s for s in d["shards"] if s] if "shards" in d else [d]', "return [d]", [MERGED]),
    ("harness/engine/passes.py", "n, part = _images(args, output), self.current", "n, part = 1, self.current",
     [PASSES + "test_the_attacks_do_the_passes_of_one_bare_autoattack_call"]),
    ("harness/engine/attack.py", '                with meter.part("determinism"):', "                if True:",
     [PASSES + "test_the_attacks_do_the_passes_of_one_bare_autoattack_call"]),
    ("harness/engine/attack.py", "    with torch.enable_grad():   # as in the bare call",
     "    with torch.no_grad():   # as in the bare call",
     [PASSES + "test_the_attacks_do_the_passes_of_one_bare_autoattack_call"]),
    ("harness/cost.py", '        parts = dict(record["passes"])', '        if record.get("resumed"):\n            continue\n'
     '        parts = dict(record["passes"])', [PASSES + "test_a_resumed_run_and_merged_shards_count_every_task_once"]),
    ("harness/cost.py", 'seconds = cost["total"]["seconds"]', 'seconds = sum(r["seconds"] for r in cost["stages"])',
     [PASSES + "test_profile_prints_a_row_per_stage_whose_shares_add_up"]),
    ("harness/estimate.py", "images = (n_run * low, n_run * k / n_sample, n_run * high)",
     "images = (n_run * low, n_run * k, n_run * high)", [EST + "test_each_stage_scales_with_the_run_times_the_share_that_entered_it"]),
    ("harness/estimate.py", "        low, high = clopper_pearson(k, n_sample)", "        low = high = k / n_sample",
     [EST + "test_the_range_is_each_shares_clopper_pearson_interval"]),
    ("harness/estimate.py", "seconds = tuple(busiest(i, batch_size, workers) *",
     "seconds = tuple(i / workers *", [EST + "test_workers_share_a_stage_only_as_far_as_its_chunks_go"]),
    ("harness/estimate.py", "return min(images, math.ceil(math.ceil(images / batch_size) / workers) * batch_size)",
     "return images / max(1, min(workers, math.ceil(images / batch_size)))",
     [EST + "test_workers_share_a_stage_only_as_far_as_its_chunks_go"]),
    ("harness/estimate.py", "max(batch_size * workers,", "max(batch_size,",
     [EST + "test_the_default_sample_is_one_percent_and_at_least_a_chunk_per_worker"]),
    ("harness/estimate.py", "    if sample > n_run:", "    if False:", [EST + "test_bad_input_is_one_line"]),
    ("harness/estimate.py", " + checks[kind] + diag[kind])", " + diag[kind])",
     [EST + "test_a_sample_of_the_whole_run_projects_exactly_the_runs_passes"]),
]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv*", "site", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def _run_tests(tree: Path, selection: list[str], timeout: float) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    lines = proc.stdout.strip().splitlines() or ["(no output)"]
    why = next((line[1:].strip() for line in lines if line.startswith("E ")), "")   # the first error line of a failure
    return proc.returncode == 0, lines[-1] + (f"; {why[:100]}" if why else "")


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for i, (path, old, new, sel) in enumerate(MUTATIONS):
            print(f"{i:2d} {path}: {old!r} -> {new!r}  [{' '.join(sel)}]")
        return 0
    rows = [int(a) for a in argv] or list(range(len(MUTATIONS)))
    killed = survived = broken = 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        tree = Path(tmp) / "tree"
        _copy_tree(tree)
        baseline: dict[tuple[str, ...], bool] = {}
        for i in rows:
            path, old, new, selection = MUTATIONS[i]
            key = tuple(selection)
            if key not in baseline:
                baseline[key], last = _run_tests(tree, selection, 900)
                if not baseline[key]:
                    print(f"baseline of {' '.join(selection)} fails: {last}")
            target = tree / path
            original = target.read_text()
            if original.count(old) != 1:
                print(f"{i:2d} STALE    {path}: {old!r} occurs {original.count(old)} times")
                broken += 1
                continue
            if not baseline[key]:
                print(f"{i:2d} BROKEN BASELINE {path}")
                broken += 1
                continue
            target.write_text(original.replace(old, new))
            t0 = time.time()
            try:
                passed, last = _run_tests(tree, selection, 900)
            finally:
                target.write_text(original)
            verdict = "SURVIVED" if passed else "killed"
            survived += passed
            killed += not passed
            print(f"{i:2d} {verdict:8s} {time.time() - t0:5.0f}s {path}: {old!r} -> {new!r} ({last})", flush=True)
    total = killed + survived
    print(f"killed {killed} of {total} edits ({100 * killed / max(total, 1):.0f} %); {survived} survived"
          + (f"; {broken} not run" if broken else ""))
    return 0 if survived == 0 and broken == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
