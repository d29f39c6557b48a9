"""mkdocs hook: serve the figures that live in model_cards/ as part of the site.

The pages link them as ``figures/NAME.png`` and ``toy/NAME.png``; the files stay where the
model cards and ``score-harness`` / ``score-train toy`` write them, and are added to the site's
files at build time, so ``mkdocs build --strict`` checks those links like any other.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

# site folder -> source folder, relative to the repository root (the folder of mkdocs.yml)
FOLDERS = {"figures": "model_cards/figures", "toy": "model_cards/toy"}


def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).resolve().parent
    for site_dir, source_dir in FOLDERS.items():
        for png in sorted((root / source_dir).glob("*.png")):
            files.append(File.generated(config, f"{site_dir}/{png.name}", abs_src_path=str(png)))
    return files
