"""The zoo's architectures have timm's model interface, written from timm 1.0's conventions (resnet.py,
_features.py, _builder.py, _manipulate.py): heads, pooling, feature maps, intermediates, TorchScript, fx,
and the recipes a timm user runs on them."""

import io

import pytest
import timm
import timm.optim
import torch
import torch.nn as nn
from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg, group_parameters

import zoo
from zoo.architectures import KNOWN_ARCHITECTURES, architecture_class
from zoo.errors import ConfigError
from zoo.timm_models import register_timm_models, timm_name

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

# timm name -> (channels of the stem and each stage, their reductions); small models, both WRN activations.
ARCHS = {
    "wrn_10_1_swish": ([16, 16, 32, 64], [1, 1, 2, 4]),
    "wrn_16_2": ([16, 32, 64, 128], [1, 1, 2, 4]),
    "preact_resnet_18": ([64, 64, 128, 256, 512], [1, 1, 2, 4, 8]),
}
register_timm_models("wrn-16-2")   # a small ReLU WideResNet (not among the named architectures)
FEATURE_CLASSES = ["list", "dict", "hook", "getter", "fx"]
# Small inputs keep the suite fast; the sizes are multiples of every reduction but not square.
X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
X_OTHER = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(1))
X_ODD = torch.rand(1, 3, 9, 13, generator=torch.Generator().manual_seed(2))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a busy machine their spinning costs much."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, **kwargs):
    torch.manual_seed(0)       # the same weights for every call with the same architecture
    return timm.create_model(name, **kwargs).eval()


def with_backbone_of(model, name, **kwargs):
    """``build(name, **kwargs)`` holding ``model``'s weights (all but a head that differs)."""
    other = build(name, **kwargs)
    missing, unexpected = other.load_state_dict(model.state_dict(), strict=False)
    assert {k.split(".")[0] for k in missing + unexpected} <= {model.pretrained_cfg["classifier"]}
    return other


def bundled_tiny():
    """(the bundled SCORE WRN-10-1 as zoo loads it, its weights file)."""
    return zoo.load_model("cifar10-linf-tiny"), str(zoo.locate("cifar10-linf-tiny").path / "model.safetensors")


def exact(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ARCHS)
def test_features_pooled_features_and_logits(name):
    channels, reductions = ARCHS[name]
    model = build(name)
    assert (model.num_classes, model.num_features, model.head_hidden_size) == (10, channels[-1], channels[-1])
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().in_features == channels[-1]
    with torch.no_grad():
        for x in (X, X_OTHER):
            features = model.forward_features(x)
            assert features.shape == (len(x), channels[-1], x.shape[2] // reductions[-1], x.shape[3] // reductions[-1])
            assert (features >= 0).all() or name.endswith("swish")     # after the final BN + activation
            pooled = model.forward_head(features, pre_logits=True)
            torch.testing.assert_close(pooled, features.mean((2, 3)), rtol=1e-5, atol=1e-6)
            exact(model.forward_head(features), model.get_classifier()(pooled))
            exact(model(x), model.forward_head(features))


@pytest.mark.parametrize("name", ARCHS)
def test_num_classes_0_global_pool_and_reset_classifier(name):
    model = build(name)
    with torch.no_grad():
        features = model.forward_features(X)
        pooled = model.forward_head(features, pre_logits=True)
        headless = with_backbone_of(model, name, num_classes=0)
        exact(headless(X), pooled)                                         # timm: num_classes=0 gives pooled features
        assert isinstance(headless.get_classifier(), nn.Identity)
        exact(with_backbone_of(model, name, num_classes=0, global_pool="max")(X), features.amax((2, 3)))
        exact(with_backbone_of(model, name, num_classes=0, global_pool="")(X), features)   # no pooling: the map
        max_pooled = with_backbone_of(model, name, global_pool="max")
        exact(max_pooled(X), model.get_classifier()(features.amax((2, 3))))

        model.reset_classifier(5)
        assert model.num_classes == 5 and model.get_classifier().out_features == 5 and model(X).shape == (2, 5)
        exact(model.forward_head(features, pre_logits=True), pooled)       # the backbone did not move
        model.reset_classifier(0, "max")
        exact(model(X), features.amax((2, 3)))
        model.reset_classifier(0, "")
        exact(model(X), features)
    with pytest.raises(ConfigError, match="global_pool='' .* needs num_classes=0"):
        model.reset_classifier(10, "")
    with pytest.raises(ConfigError, match="global_pool must be one of"):
        build(name, global_pool="avgmaxx")


@pytest.mark.parametrize("name", ARCHS)
def test_drop_rate_drops_before_the_classifier_in_training_only(name):
    model = build(name, drop_rate=0.5)
    reference = build(name)
    assert model.drop_rate == 0.5 and reference.drop_rate == 0.0
    with torch.no_grad():
        exact(model(X), reference(X))                                      # eval: no dropout
        model.train(), reference.train()
        assert not torch.equal(model(X), model(X))                         # train: a fresh dropout mask each call
        exact(reference(X), reference(X))
    with pytest.raises(ConfigError, match="drop_rate"):
        build(name, drop_rate=1.0)


@pytest.mark.parametrize("name", ARCHS)
def test_features_only_gives_each_stage_with_its_channels_and_reduction_in_every_timm_wrapper(name):
    channels, reductions = ARCHS[name]
    with torch.no_grad():
        expected = build(name).forward_intermediates(X_OTHER, intermediates_only=True)
        for feature_cls in FEATURE_CLASSES:
            extractor = build(name, features_only=True, feature_cls=feature_cls)
            assert extractor.feature_info.channels() == channels and extractor.feature_info.reduction() == reductions
            maps = extractor(X_OTHER)
            maps = list(maps.values()) if isinstance(maps, dict) else maps
            assert [m.shape for m in maps] == [(1, c, 24 // r, 16 // r) for c, r in zip(channels, reductions)]
            for got, want in zip(maps, expected):
                exact(got, want)
        last_two = build(name, features_only=True, out_indices=(-2, -1))
        assert last_two.feature_info.channels() == channels[-2:]
        assert [m.shape[1] for m in last_two(X)] == channels[-2:]


@pytest.mark.parametrize("name", ARCHS)
def test_forward_intermediates_and_pruning(name):
    channels, _ = ARCHS[name]
    n = len(channels)
    model = build(name)
    with torch.no_grad():
        final, maps = model.forward_intermediates(X)
        exact(final, model.forward_features(X))
        assert [m.shape[1] for m in maps] == channels
        exact(model.forward_intermediates(X, indices=2, intermediates_only=True)[0], maps[-2])
        picked = model.forward_intermediates(X, indices=[0, -1], norm=True, intermediates_only=True)
        exact(picked[0], maps[0])
        exact(picked[1], final)                                            # norm: the final BN + activation
        _, early = model.forward_intermediates(X, indices=[1], stop_early=True)
        exact(early[0], maps[1])
        with pytest.raises(ConfigError, match="out of range"):
            model.forward_intermediates(X, indices=[n])
        assert model.prune_intermediate_layers([1], prune_norm=True) == [1]
        assert isinstance(model.get_classifier(), nn.Identity)
        exact(model.forward_intermediates(X, indices=[1], intermediates_only=True)[0], maps[1])
        exact(model.forward_features(X), maps[1])                          # later stages and final norm are gone


@pytest.mark.parametrize("name", ARCHS)
def test_torchscript_and_fx_give_the_eager_logits(name):
    model = build(name)
    scripted = torch.jit.script(model)
    traced = torch.fx.symbolic_trace(model)
    traced_scripted = torch.jit.script(traced)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    reloaded = torch.jit.load(buffer)
    with torch.no_grad():
        for x in (X, X_ODD):
            eager = model(x)
            for other in (scripted, traced, traced_scripted, reloaded):
                torch.testing.assert_close(other(x), eager, rtol=1e-6, atol=1e-6)
        features = build(name, features_only=True)
        for got, want in zip(torch.jit.script(features)(X), features(X)):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("size", [(8, 8), (9, 13), (33, 40)])
def test_any_input_of_at_least_8x8_runs(name, size):
    model = build(name)
    with torch.no_grad():
        assert model(torch.rand(1, 3, *size)).shape == (1, 10)


@pytest.mark.parametrize("name", ARCHS)
def test_grad_checkpointing_recomputes_blocks_and_keeps_the_gradients(name):
    def grads_and_block_calls(checkpointing):
        model = build(name).train()
        model.set_grad_checkpointing(checkpointing)
        calls = []
        first_block = model.get_submodule(model.feature_info[1]["module"]).modules()
        next(m for m in first_block if type(m).__name__.endswith("Block")).register_forward_pre_hook(
            lambda *_: calls.append(1))
        model(X).square().sum().backward()
        return {k: p.grad for k, p in model.named_parameters()}, len(calls)

    plain, plain_calls = grads_and_block_calls(False)
    checkpointed, checkpointed_calls = grads_and_block_calls(True)
    assert (plain_calls, checkpointed_calls) == (1, 2)                      # recomputed in backward
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ARCHS)
def test_group_matcher_puts_every_parameter_in_one_ordered_group(name):
    model = build(name)
    first_conv, classifier = model.pretrained_cfg["first_conv"], model.pretrained_cfg["classifier"]
    for coarse in (False, True):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        names = [n for g in groups.values() for n in g]
        assert sorted(names) == sorted(n for n, _ in model.named_parameters())
        assert groups[0] == [f"{first_conv}.weight"]
        assert groups[max(groups)] == [f"{classifier}.weight", f"{classifier}.bias"]   # the head comes last
    blocks = len(group_parameters(model, model.group_matcher())) - 2
    assert blocks == sum(1 for m in model.modules() if type(m).__name__.endswith("Block"))
    final_norm = model.FINAL_NORM[0]
    fine = group_parameters(model, model.group_matcher())
    assert f"{final_norm}.weight" in fine[max(fine) - 1]                   # the final norm joins the last block
    optimizer = timm.optim.create_optimizer_v2(model, opt="sgd", lr=0.1, layer_decay=0.5)
    assert sorted({g["lr_scale"] for g in optimizer.param_groups}) == [0.5 ** i for i in range(blocks + 1, -1, -1)]


@pytest.mark.parametrize("name", ARCHS)
def test_pretrained_configs_tell_timm_the_truth(name):
    cfg = get_pretrained_cfg(name).to_dict()
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)   # normalisation is inside the model
    assert cfg["input_size"] == (3, 32, 32) and cfg["min_input_size"] == (3, 8, 8) and not cfg["fixed_input_size"]
    model = build(name)
    conv, head = model.get_submodule(cfg["first_conv"]), model.get_submodule(cfg["classifier"])
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 3 and head is model.get_classifier()
    with torch.no_grad():
        assert tuple(model.forward_features(torch.rand(1, *cfg["input_size"])).shape[-2:]) == cfg["pool_size"]
        assert model(torch.rand(1, *cfg["min_input_size"])).shape == (1, 10)


@pytest.mark.parametrize("arch", KNOWN_ARCHITECTURES)
def test_every_named_architecture_has_the_checked_config_of_its_family(arch):
    family = {"WideResNet": "wrn_10_1_swish", "PreActResNet": "preact_resnet_18"}[architecture_class(arch).__name__]
    assert get_pretrained_cfg(timm_name(arch)).to_dict() == {**get_pretrained_cfg(family).to_dict(),
                                                             "architecture": timm_name(arch)}


def test_wrn_28_10_feature_maps():
    extractor = build("wrn_28_10_swish", features_only=True, out_indices=(1, 2, 3))
    assert extractor.feature_info.channels() == [160, 320, 640]
    with torch.no_grad():
        assert [m.shape for m in extractor(torch.rand(1, 3, 8, 8))] == [(1, 160, 8, 8), (1, 320, 4, 4), (1, 640, 2, 2)]


def test_timm_user_recipes_on_the_bundled_model():
    """Backbone features, a new head for fine-tuning, features_only, the data config and TorchScript, via timm."""
    reference, weights = bundled_tiny()
    overlay = {"file": weights}
    with torch.no_grad():
        features = reference.forward_head(reference.forward_features(X), pre_logits=True)
        backbone = timm.create_model("wrn_10_1_swish", pretrained=True, num_classes=0,
                                     pretrained_cfg_overlay=overlay).eval()
        exact(backbone(X), features)

        extractor = timm.create_model("wrn_10_1_swish", pretrained=True, features_only=True,
                                      pretrained_cfg_overlay=overlay).eval()
        for got, want in zip(extractor(X), reference.forward_intermediates(X, intermediates_only=True)):
            exact(got, want)

        scripted = torch.jit.script(timm.create_model("wrn_10_1_swish", pretrained=True,
                                                      pretrained_cfg_overlay=overlay).eval())
        torch.testing.assert_close(scripted(X), reference(X), rtol=1e-6, atol=1e-6)

    finetune = timm.create_model("wrn_10_1_swish", pretrained=True, num_classes=3, pretrained_cfg_overlay=overlay)
    assert finetune.get_classifier().out_features == 3
    for k, v in reference.state_dict().items():
        if not k.startswith("logits."):
            exact(finetune.state_dict()[k], v)
    for p in finetune.parameters():
        p.requires_grad = False
    head = finetune.get_classifier()
    for p in head.parameters():
        p.requires_grad = True
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    finetune.eval()       # frozen BatchNorm statistics too
    before = {k: v.clone() for k, v in finetune.state_dict().items()}
    y = torch.tensor([0, 2])
    loss = nn.functional.cross_entropy(finetune(X), y)
    loss.backward()
    optimizer.step()
    assert nn.functional.cross_entropy(finetune(X), y) < loss
    changed = {k for k, v in finetune.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"logits.weight", "logits.bias"}

    config = resolve_data_config({}, model=backbone)
    transform = create_transform(**config)
    from PIL import Image

    image = Image.new("RGB", (32, 32), (255, 0, 0))
    tensor = transform(image)
    assert tensor.shape == (3, 32, 32) and tensor[0].eq(1).all() and tensor[1:].eq(0).all()   # [0, 1], not normalised
