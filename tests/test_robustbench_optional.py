"""robustbench is an extra: the core install pins nothing robustbench pins, the zoo works without robustbench, and
each RobustBench drop-in says in one line which extra to install.

The drop-ins run in fresh interpreters where ``import robustbench`` is blocked (``sys.modules['robustbench'] =
None`` before anything is imported), so these tests check the same thing with or without robustbench installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement

EXTRA_LINE = "pip install 'score-zoo[robustbench]'"
BLOCK = "import sys; sys.modules['robustbench'] = None\n"   # `import robustbench` now raises ModuleNotFoundError
# The releases a modern stack brings (and robustbench 1.1.1 downgrades or caps): the core install must accept them.
MODERN = {"timm": "1.0.31", "gdown": "6.5.1", "huggingface-hub": "2.4.0", "setuptools": "84.2.1", "torch": "2.15.0",
          "torchvision": "0.29.2"}
PINNED_BY_ROBUSTBENCH = {"robustbench", "timm", "gdown", "setuptools"}


def check_requirements(lines: list[str]) -> None:
    """The distribution's requirements: core ones pin nothing robustbench pins, the extra holds robustbench."""
    reqs = [Requirement(line) for line in lines]
    core = [r for r in reqs if r.marker is None]
    extra = {r.name: r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "robustbench"})
             and not r.marker.evaluate({"extra": ""})}
    names = {r.name.lower().replace("_", "-"): r for r in core}
    assert "robustbench" not in names and "setuptools" not in names, [str(r) for r in core]
    for name, modern in MODERN.items():
        if name in names:
            assert names[name].specifier.contains(modern), f"pip would replace {name} {modern}: {names[name]}"
    for name in PINNED_BY_ROBUSTBENCH & set(names):
        assert not any(s.operator in ("==", "===", "<", "<=", "~=") for s in names[name].specifier), names[name]
    assert {"timm", "gdown"} <= set(names)
    # robustbench 1.1.1's own pins must satisfy the core requirements too, else the extra cannot be installed
    assert names["timm"].specifier.contains("1.0.9") and names["gdown"].specifier.contains("5.1.0")
    assert str(extra["robustbench"].specifier) == "==1.1.1" and str(extra["setuptools"].specifier) == "<81"


def test_the_installed_requirements_keep_a_modern_stack():
    check_requirements(requires("score-zoo"))


def blocked(code: str, *args: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where robustbench cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), cwd=cwd)


def assert_one_error_line(done: subprocess.CompletedProcess, needs: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {needs} needs RobustBench, which is not installed: {EXTRA_LINE}"], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("cli,args,needs", [
    ("harness.cli", ["evaluate", "robustbench:Standard", "--n-examples", "4"], "the model spec robustbench:Standard"),
    ("zoo.cli", ["mirror", "Standard", "--dataset", "cifar10", "--threat-model", "Linf"], "score-zoo mirror"),
])
def test_the_cli_drop_ins_say_which_extra_in_one_line(cli, args, needs, tmp_path):
    done = blocked(f"from {cli} import main; main()", *args, cwd=tmp_path)
    assert_one_error_line(done, needs)
    assert list(tmp_path.iterdir()) == []          # nothing written (no ./models, no ./mirrors)


LIBRARY = """
import json, warnings
warnings.simplefilter("ignore")
import torch, timm, zoo, harness
from zoo.errors import ConfigError
from zoo.architectures.robustbench import model_for_config
out = {}
try:
    import robustbench
    out["robustbench"] = "imported"
except ImportError:
    out["robustbench"] = "blocked"
x = torch.rand(2, 3, 32, 32)
with torch.no_grad():
    same = torch.equal(harness.load_model("cifar10-linf-tiny")(x), zoo.load_model("cifar10-linf-tiny")(x))
    out["zoo and harness load"] = same
    out["timm"] = timm.create_model("wrn_10_1_swish", num_classes=3)(x).shape[-1]
for name, call in [("load_model", lambda: harness.load_model("Standard")),
                   ("mirror entry", lambda: model_for_config({"robustbench": {"model": "Carmon2019Unlabeled",
                                                             "dataset": "cifar10", "threat_model": "Linf"}}))]:
    try:
        call()
        out[name] = "loaded"
    except ConfigError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_the_zoo_works_without_robustbench_and_its_loader_says_which_extra():
    done = blocked(LIBRARY)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["robustbench"] == "blocked" and out["zoo and harness load"] is True and out["timm"] == 3
    assert out["load_model"] == ("'Standard' is not a SCORE Zoo model; loading it as a RobustBench model needs "
                                 f"RobustBench, which is not installed: {EXTRA_LINE}")
    assert out["mirror entry"] == ("RobustBench's definition of Carmon2019Unlabeled needs RobustBench, which is not "
                                   f"installed: {EXTRA_LINE}")


def test_a_robustbench_that_cannot_be_imported_says_so_and_names_the_extra(tmp_path):
    """robustbench installed without what it imports (pkg_resources, gone in setuptools 81): the extra fixes it."""
    fake = tmp_path / "robustbench"
    fake.mkdir()
    (fake / "__init__.py").write_text("import pkg_resources_gone_in_setuptools_81\n")
    code = ("from zoo.extras import import_robustbench\n"
            "try:\n    import_robustbench(purpose='score-zoo mirror')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("ConfigError score-zoo mirror needs RobustBench, which is installed but cannot be "
                                   "imported (No module named 'pkg_resources_gone_in_setuptools_81'): "
                                   f"{EXTRA_LINE} installs the versions it needs")
