"""robustbench:NAME of an ensemble: the result's weights_sha256 is the hash of its checkpoint files, not of memory."""

import hashlib

import pytest
import torch

from zoo.architectures.robustbench import create_robustbench_model

ENSEMBLE = ("Chen2020Adversarial", "cifar10", "Linf")   # RobustBench lists three checkpoint files for it


@pytest.mark.robustbench
def test_an_ensemble_is_hashed_from_its_member_files(tmp_path):
    """Breaks when the harness rebuilds the checkpoint path by hand (``NAME.pt``, absent for an ensemble) and falls
    back to hashing the weights in memory, or hashes only one member."""
    from harness.models import resolve_model

    name, dataset, threat_model = ENSEMBLE
    torch.manual_seed(0)
    members = create_robustbench_model(name, dataset, threat_model).models
    folder = tmp_path / dataset / threat_model
    folder.mkdir(parents=True)
    paths = [folder / f"{name}.pt_m{i}.pt" for i in range(len(members))]
    for member, path in zip(members, paths):
        torch.save(member.state_dict(), path)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    resolved = resolve_model(f"robustbench:{name}", dataset, threat_model, model_dir=str(tmp_path))
    assert len(paths) == 3
    assert resolved.weights_sha256 == hashlib.sha256("\n".join(digests).encode()).hexdigest()
    torch.save(members[0].state_dict(), paths[2])                 # another third member: another hash
    again = resolve_model(f"robustbench:{name}", dataset, threat_model, model_dir=str(tmp_path))
    assert again.weights_sha256 != resolved.weights_sha256
