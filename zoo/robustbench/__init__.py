"""What of RobustBench's interop needs robustbench installed: its ``load_model`` drop-in (``loader``), its
checkpoints loaded by its rules (``weights``), the mirror of its checkpoints to the Hub (``mirror``) and the
``autoattack`` import adapter robustbench needs (``autoattack_compat``).

The rest lives with its kind, below this package: RobustBench's model definitions are an architecture family
(``zoo.architectures.robustbench``), its Google Drive copy of checkpoints is a weights source
(``zoo.sources.drive``), its model_info JSON is data (``zoo.model_info``), and the import of robustbench itself,
on first use only, with one line naming the extra when it is missing, is ``zoo.extras``.
"""
