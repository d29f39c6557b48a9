"""A RobustBench checkpoint in RobustBench's own layout: robustbench:NAME and the zoo importer agree."""

import warnings

import pytest
import torch

import harness
from harness.models import resolve_model
import zoo
from zoo.checkpoints import import_checkpoint

pytestmark = pytest.mark.robustbench   # robustbench:NAME and robustbench's model zoo


def test_robustbench_checkpoint_evaluates_and_imports_to_the_same_logits(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    build = model_dicts[BenchmarkDataset("cifar10")][ThreatModel("Linf")]["Pang2022Robustness_WRN28_10"]["model"]
    torch.manual_seed(0)
    reference = build().eval()
    checkpoint = tmp_path / "models" / "cifar10" / "Linf" / "Pang2022Robustness_WRN28_10.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, checkpoint)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = harness.evaluate("robustbench:Pang2022Robustness_WRN28_10", "cifar10", "Linf", n_examples=4,
                                  batch_size=4, version="custom", attacks=["apgd-ce"], n_iter=2,
                                  model_dir=str(tmp_path / "models"), progress=False)
    assert result.evaluation.model == {"spec": "robustbench:Pang2022Robustness_WRN28_10", "kind": "robustbench"}
    assert result.evaluation.n_examples == 4

    import_checkpoint(checkpoint, "wrn-28-10-swish", 10, "cifar10", tmp_path / "imported")
    imported = zoo.load_model(tmp_path / "imported")
    evaluated = resolve_model("robustbench:Pang2022Robustness_WRN28_10", "cifar10", "Linf",
                              model_dir=str(tmp_path / "models")).model  # the model the evaluation ran
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), reference(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(evaluated(x), reference(x), rtol=0, atol=0)
        torch.testing.assert_close(evaluated(x), imported(x), rtol=1e-5, atol=1e-5)
