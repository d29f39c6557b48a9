"""timm 1.0.9 (the version robustbench 1.1.1 pins) on huggingface_hub >= 1.0: restore what it imports.

timm 1.0.9 imports ``huggingface_hub.repo_type_and_id_from_hf_id``, which
huggingface_hub 1.0 removed; the failed import switches off all of timm's Hub
support (``hf-hub:`` models raise "package not installed"). ``ensure_timm_hub``
puts the function back (a thin wrapper over ``RepoUrl``) before timm is used,
and reloads timm's Hub module if timm was imported without it.

Newer timm (the core install's, tested with 1.0.31 on huggingface_hub 2.4) no
longer imports it, so there this changes nothing timm uses; it matters with the
``robustbench`` extra, which pins timm 1.0.9.
"""

from __future__ import annotations

import importlib
import sys

import huggingface_hub


def repo_type_and_id_from_hf_id(hf_id: str, hub_url: str | None = None) -> tuple[str | None, str | None, str]:
    """(repo type, namespace, name) of a repo URL or id, as huggingface_hub < 1.0 returned them."""
    url = hf_id if isinstance(hf_id, huggingface_hub.RepoUrl) else huggingface_hub.RepoUrl(hf_id, endpoint=hub_url)
    return url.repo_type, url.namespace, url.repo_name


def ensure_timm_hub() -> None:
    """Make timm's ``hf-hub:`` support work with the installed huggingface_hub."""
    if not hasattr(huggingface_hub, "repo_type_and_id_from_hf_id"):
        huggingface_hub.repo_type_and_id_from_hf_id = repo_type_and_id_from_hf_id
    hub_module = sys.modules.get("timm.models._hub")
    if hub_module is not None and not getattr(hub_module, "_has_hf_hub", True):
        importlib.reload(hub_module)  # timm was imported first: redo its Hub imports in place
