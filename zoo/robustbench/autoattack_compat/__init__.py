"""``import autoattack`` for robustbench, served only when no real AutoAttack is installed.

robustbench 1.1.1 imports ``autoattack`` (AutoAttack's GitHub package, which is
not on PyPI). SCORE Zoo installs no top-level ``autoattack``: this module
(installed as ``_score_zoo_autoattack``) holds an adapter over the
``pyautoattack`` distribution in ``autoattack/`` and a finder that serves it
under the name ``autoattack``. The finder sits at the end of ``sys.meta_path``
(``score_zoo_autoattack.pth`` installs it at interpreter start-up), so it answers
only when every other finder has failed: an installed AutoAttack always wins,
and neither package overwrites the other's files.

Kept free of heavy imports: it runs at the start of every interpreter.
"""

import importlib.util
import os
import sys

NAME = "autoattack"
ADAPTER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), NAME)


class AdapterFinder:
    """A meta path finder for the top-level name ``autoattack`` only (its submodules follow its ``__path__``)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != NAME:
            return None
        return importlib.util.spec_from_file_location(
            NAME, os.path.join(ADAPTER_DIR, "__init__.py"), submodule_search_locations=[ADAPTER_DIR])


def install() -> None:
    """Append the adapter's finder to ``sys.meta_path`` (once)."""
    if AdapterFinder not in sys.meta_path:
        sys.meta_path.append(AdapterFinder)
