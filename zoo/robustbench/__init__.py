"""RobustBench interop, in one place: its model definitions (``models``), its checkpoints and Google Drive copy
(``weights``, ``drive``), its ``load_model`` drop-in (``loader``), its model_info JSON (``model_info``), the
mirror of its checkpoints to the Hub (``mirror``) and the ``autoattack`` import adapter it needs
(``autoattack_compat``). robustbench itself is imported on first use only, so ``import zoo`` stays light.
"""
