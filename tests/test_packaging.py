"""`pip install .` (a built wheel, not editable) works from any directory: commands, package data, autoattack.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps
--no-build-isolation``) and installed with ``--no-deps`` into a fresh virtual
environment; a .pth file added afterwards lends it this environment's
dependencies (torch, timm, and robustbench where the extra is installed, ...),
never the source tree. The wheel's requirements keep a modern stack (robustbench
and its pins only in the ``robustbench`` extra).
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_robustbench_optional import check_requirements

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "zoo", "harness", "training")
# Where each source folder lands in site-packages (the autoattack adapter is renamed, see pyproject.toml).
INSTALLED_AS = {"zoo": "zoo", "harness": "harness", "training": "training",
                "zoo/robustbench/autoattack_compat": "_score_zoo_autoattack"}


def run(args, cwd, env=None, timeout=120):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def package_files() -> dict[str, str]:
    """Every file of the source packages (no caches) -> its path in the installed tree."""
    files = {}
    for top in ("zoo", "harness", "training"):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                rel = path.relative_to(REPO).as_posix()
                src = max((s for s in INSTALLED_AS if rel == s or rel.startswith(s + "/")), key=len)
                files[rel] = INSTALLED_AS[src] + rel[len(src):]
    return files


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site-packages, bin, environment) of a fresh venv holding the wheel, and a folder away from the sources."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"), str(src)], cwd=tmp)
    wheel = next((tmp / "wheel").glob("score_zoo-*.whl"))
    run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    run(pip + ["--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=tmp).strip())
    # The dependencies of this environment, behind the venv's own site-packages (.pth paths come after it).
    deps = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "zz_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SCORE_ZOO_REGISTRY=str(tmp / "registry.json"), HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1",
               PATH=f"{tmp / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return purelib, tmp / "venv" / "bin", env, elsewhere


def test_the_wheel_installs_every_package_file_and_no_top_level_autoattack(installed):
    purelib, _, _, _ = installed
    missing = [installed_rel for installed_rel in package_files().values() if not (purelib / installed_rel).is_file()]
    assert not missing, f"not installed by the wheel: {missing}"
    assert (purelib / "zoo" / "bundled" / "cifar10-linf-tiny" / "model.safetensors").is_file()
    assert (purelib / "harness" / "bundled" / "cifar10_test_first1000.npz").is_file()
    assert not (purelib / "autoattack").exists()           # nothing to overwrite a real AutoAttack with
    assert (purelib / "score_zoo_autoattack.pth").is_file()


def test_readme_commands_run_from_another_directory(installed):
    purelib, bin_dir, env, elsewhere = installed
    entries = json.loads(run([str(bin_dir / "score-zoo"), "list", "--json"], cwd=elsewhere, env=env))
    assert {"cifar10-linf", "cifar10-linf-tiny", "cifar10-linf-tiny-trades"} <= {e["name"] for e in entries}
    recipes = run([str(bin_dir / "score-train"), "recipes"], cwd=elsewhere, env=env)
    assert "cifar10-linf-tiny" in recipes and "cifar10-linf-wrn28-10" in recipes
    run([str(bin_dir / "score-zoo"), "card", "cifar10-linf-tiny"], cwd=elsewhere, env=env)
    assert (elsewhere / "model_cards" / "cifar10-linf-tiny.md").is_file()   # cards go to the current directory,
    assert not (purelib / "model_cards").exists()                          # never into site-packages


def test_the_wheel_requires_no_pin_of_robustbench_outside_its_extra(installed):
    purelib, _, _, _ = installed
    [metadata] = purelib.glob("score_zoo-*.dist-info/METADATA")
    check_requirements([line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines()
                        if line.startswith("Requires-Dist:")])


FRESH_INTERPRETER = """
import warnings; warnings.simplefilter("ignore")
import autoattack, zoo, harness.data
found = zoo.locate("cifar10-linf-tiny")
zoo.load_model("cifar10-linf-tiny")                     # sha256-checked against the installed entry
print(autoattack.__file__, zoo.__file__, found.source, found.path, harness.data.BUNDLED_SUBSET.is_file())
"""


def test_a_fresh_interpreter_serves_autoattack_and_loads_the_bundled_model(installed):
    purelib, bin_dir, env, elsewhere = installed
    out = run([str(bin_dir / "python"), "-c", FRESH_INTERPRETER], cwd=elsewhere, env=env).split()
    assert out == [str(purelib / "_score_zoo_autoattack" / "autoattack" / "__init__.py"),
                   str(purelib / "zoo" / "__init__.py"), "bundled",
                   str(purelib / "zoo" / "bundled" / "cifar10-linf-tiny"), "True"]


@pytest.mark.robustbench
def test_a_fresh_interpreter_imports_robustbench_through_the_installed_adapter(installed):
    purelib, bin_dir, env, elsewhere = installed
    code = ("import warnings; warnings.simplefilter('ignore'); import robustbench.eval, autoattack; "
            "print(autoattack.__file__, robustbench.eval.AutoAttack is autoattack.AutoAttack)")
    out = run([str(bin_dir / "python"), "-c", code], cwd=elsewhere, env=env).split()
    assert out == [str(purelib / "_score_zoo_autoattack" / "autoattack" / "__init__.py"), "True"]


def test_a_real_autoattack_wins_over_the_installed_adapter(installed, tmp_path):
    _, bin_dir, env, elsewhere = installed
    (tmp_path / "autoattack").mkdir()
    (tmp_path / "autoattack" / "__init__.py").write_text("REAL = True\n")
    env = {**env, "PYTHONPATH": str(tmp_path)}
    out = run([str(bin_dir / "python"), "-c", "import autoattack; print(autoattack.__file__, autoattack.REAL)"],
              cwd=elsewhere, env=env)
    assert out.split() == [str(tmp_path / "autoattack" / "__init__.py"), "True"]
