"""Build hooks that pyproject.toml cannot express: ship ``score_zoo_autoattack.pth`` at the top of site-packages.

The .pth file appends the ``autoattack`` adapter's finder to ``sys.meta_path``
at interpreter start-up (see zoo/robustbench/autoattack_compat/__init__.py), in regular
and in editable installs. Everything else is configured in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "score_zoo_autoattack.pth"
PTH_LINE = "import _score_zoo_autoattack; _score_zoo_autoattack.install()\n"


class BuildPyWithPth(build_py):
    """build_py that also puts the .pth file at the root of the wheel."""

    def run(self):
        super().run()
        Path(self.build_lib, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH_NAME))]


class EditableWheelWithPth(editable_wheel):
    """editable_wheel that also puts the .pth file at the root of the editable wheel.

    setuptools (68 to 80, the range pyproject.toml's build-system allows) writes
    every file of the unpacked wheel directory into the editable wheel, with its RECORD line.
    """

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        Path(unpacked_wheel, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
