"""`import autoattack` (what robustbench 1.1.1 imports): a real AutoAttack wins, else the adapter over pyautoattack.

These run in the development install (``pip install -e``); tests/test_packaging.py
checks the same in an installed wheel.
"""

import os
import subprocess
import sys
from importlib.machinery import PathFinder
from pathlib import Path

import _score_zoo_autoattack
from _score_zoo_autoattack import AdapterFinder

ADAPTER = Path(__file__).resolve().parent.parent / "zoo" / "robustbench" / "autoattack_compat" / "autoattack"
WHICH = ("import autoattack, autoattack.state, pyautoattack; print(autoattack.__file__, autoattack.state.__file__, "
         "issubclass(autoattack.AutoAttack, pyautoattack.AutoAttack))")


def python(code, **env):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_finder_answers_for_autoattack_alone_and_last():
    spec = AdapterFinder.find_spec("autoattack")
    assert Path(spec.origin) == ADAPTER / "__init__.py" and spec.submodule_search_locations == [str(ADAPTER)]
    assert AdapterFinder.find_spec("autoattack.state") is None and AdapterFinder.find_spec("numpy") is None
    _score_zoo_autoattack.install()                         # installed at start-up by the .pth file; once only
    assert sys.meta_path.count(AdapterFinder) == 1
    assert sys.meta_path.index(AdapterFinder) > sys.meta_path.index(PathFinder)   # every installed package first


def test_without_a_real_autoattack_the_adapter_serves_a_fresh_interpreter():
    assert python(WHICH) == [str(ADAPTER / "__init__.py"), str(ADAPTER / "state.py"), "True"]


def test_a_real_autoattack_on_the_path_wins(tmp_path):
    real = tmp_path / "autoattack"
    real.mkdir()
    (real / "__init__.py").write_text("class AutoAttack:\n    pass\n")
    (real / "state.py").write_text("class EvaluationState:\n    pass\n")
    code = "import autoattack, autoattack.state; print(autoattack.__file__, autoattack.state.__file__)"
    assert python(code, PYTHONPATH=str(tmp_path)) == [str(real / "__init__.py"), str(real / "state.py")]
