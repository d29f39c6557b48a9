"""bf16 autocast and channels_last training on CPU: the step runs, stays fp32 where it must, falls back cleanly."""

import json
import warnings

import pytest
import torch

import zoo
from training.config import make_config
from training.objectives import adversarial_step
from training.precision import autocast, cpu_has_native_bf16, use_bf16
from training.schedule import build_optimizer

CPU = torch.device("cpu")


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\nflags\t\t: fpu {flags}\n")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "amx_bf16 amx_tile"))
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f"))


def test_missing_bf16_falls_back_to_fp32_with_one_warning(tmp_path):
    with pytest.warns(UserWarning, match="no native bf16 support; training in fp32") as caught:
        assert use_bf16(True, CPU, _cpuinfo(tmp_path, "avx2")) is False
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert use_bf16(False, CPU, _cpuinfo(tmp_path, "avx2")) is False
        assert use_bf16(True, CPU, _cpuinfo(tmp_path, "avx512_bf16")) is True
        assert use_bf16(True, CPU, _cpuinfo(tmp_path, "avx2"), emulate=True) is True
        assert use_bf16(False, CPU, _cpuinfo(tmp_path, "avx2"), emulate=True) is False


@pytest.mark.parametrize("objective", ["score", "trades", "pgd-at"])
def test_bf16_channels_last_step_on_cpu_keeps_fp32_weights_and_losses(objective):
    torch.manual_seed(0)
    cfg = make_config({"architecture": "wrn-10-1-swish", "objective": objective, "attack_steps": 2,
                       "bf16": True, "channels_last": True})
    model = zoo.create_model("wrn-10-1-swish").to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, cfg)
    x = torch.rand(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    out = adversarial_step(model, model, x, y, cfg, 10, lambda: autocast(CPU, True), torch.Generator().manual_seed(0))
    assert out.logits_adv.dtype == torch.bfloat16  # the forwards ran in bf16 ...
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)  # ... the loss in fp32
    out.loss.backward()
    optimizer.step()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in optimizer.state.values())
    assert model.init_conv.weight.is_contiguous(memory_format=torch.channels_last)
    # softmax and losses in fp32 from the (bf16) logits: the objective, written out, on the step's own logits
    y1 = torch.nn.functional.one_hot(y, 10).float()
    clean = out.logits_clean.float() if out.logits_clean is not None else None
    adv = out.logits_adv.float()
    expected = {
        "score": lambda: ((clean.softmax(1) - y1) ** 2).sum(1).mean()
        + cfg.beta * ((adv.softmax(1) - clean.softmax(1)) ** 2).sum(1).mean(),
        "trades": lambda: torch.nn.functional.cross_entropy(clean, y) + cfg.beta * torch.nn.functional.kl_div(
            adv.log_softmax(1), clean.softmax(1), reduction="batchmean"),
        "pgd-at": lambda: torch.nn.functional.cross_entropy(adv, y)}[objective]()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)
    # the bf16 forward is the fp32 network up to bf16 rounding (8 significant bits, a few roundings deep)
    model.eval()
    with torch.no_grad():
        exact = model(x.contiguous())
        with autocast(CPU, True):
            rounded = model(x).float()
    assert 0 < (rounded - exact).abs().max() <= 2 ** -5 * exact.abs().max()


def test_training_run_records_bf16_and_keeps_fp32_weights(tmp_path):
    from safetensors.torch import load_file

    from harness.data import load_arrays
    from training import train
    from training.data import TrainData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_arrays("cifar10", "test", None)
        data = TrainData.from_arrays(x[:96], y[:96], "cifar10", holdout_size=32)
        cfg = {"architecture": "wrn-10-1-swish", "batch_size": 32, "attack_steps": 1, "eval_attack_steps": 1,
               "epochs": 1, "checkpoint_every": 0, "bf16": True, "channels_last": True}
        emulated = train(make_config({**cfg, "bf16_emulate": True}), tmp_path / "emulated", data=data, progress=False)
        plain = train(make_config(cfg), tmp_path / "plain", data=data, progress=False)
    assert json.loads((emulated / "run_info.json").read_text())["bf16"] is True
    assert json.loads((plain / "run_info.json").read_text())["bf16"] is cpu_has_native_bf16()
    weights = load_file(emulated / "model" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
