"""Contract tests over every REID_MODELS entry, plus RGA/PFSA specifics."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from pipeline.reid.models import REID_MODELS, build_reid_model


def _importable(name: str) -> bool:
    try:
        importlib.import_module(REID_MODELS[name].split(":")[0])
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(REID_MODELS))
def test_model_contract(name: str) -> None:
    if not _importable(name):
        pytest.skip(f"{name} module not importable yet")
    torch.manual_seed(0)
    model = build_reid_model(name).eval()
    assert type(model).name == name
    h, w = model.input_hw
    x = torch.randn(2, 3, h, w)
    with torch.inference_mode():
        feats = model.features(x)
        emb = model(x)
    assert "global" in feats and feats["global"].shape[0] == 2
    assert emb.shape == (2, model.embedding_dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    if set(feats) == {"global"}:  # single-branch models: embedding = normalised feature
        torch.testing.assert_close(F.normalize(feats["global"], dim=1), emb)
    # Rebuilding from config() + state_dict reproduces the embedding (and eval mode is
    # deterministic: the two instances compute it independently).
    clone = build_reid_model(name, **model.config())
    clone.load_state_dict(model.state_dict())
    with torch.inference_mode():
        again = clone.eval()(x[:1])
    torch.testing.assert_close(again, emb[:1], atol=1e-5, rtol=1e-4)


def test_unknown_names_list_choices() -> None:
    with pytest.raises(ValueError, match="rga"):
        build_reid_model("resnet")
    with pytest.raises(ValueError, match="sc"):
        build_reid_model("rga", variant="x")


def test_rga_variants_and_attention_ranges() -> None:
    from pipeline.reid.models.rga import RGAModule

    torch.manual_seed(0)
    module = RGAModule(channels=16, hw=(8, 4)).eval()
    x = torch.rand(2, 16, 8, 4) + 0.1
    with torch.inference_mode():
        y = module(x)
    ratio = y / x  # spatial and channel sigmoid weights multiply: in (0, 1)
    assert ratio.min() > 0 and ratio.max() < 1
    with pytest.raises(ValueError, match="built for"):
        module(torch.rand(1, 16, 4, 4))
    for variant, spatial, channel in [("s", True, False), ("c", False, True)]:
        net = build_reid_model("rga", variant=variant)
        assert all((m.spatial is not None) == spatial for m in net.rga)
        assert all((m.channel is not None) == channel for m in net.rga)


def test_pfsa_attention_is_parameter_free_softmax() -> None:
    from pipeline.reid.models.pfsa import PFSANet, spatial_attention

    x = torch.randn(3, 8, 16, 8)
    a = spatial_attention(x)
    assert a.shape == (3, 1, 16, 8)
    torch.testing.assert_close(a.sum(dim=(2, 3)), torch.ones(3, 1))
    peak = torch.zeros(1, 4, 5, 5)
    peak[:, :, 2, 3] = 10.0  # the strongest channel-aggregated activation gets the weight
    assert spatial_attention(peak)[0, 0].argmax().item() == 2 * 5 + 3
    plain = sum(p.numel() for p in PFSANet().parameters())
    from pipeline.reid.models.resnet import BNNeck, ResNet50Trunk

    assert plain == sum(p.numel() for p in ResNet50Trunk().parameters()) + sum(
        p.numel() for p in BNNeck(2048).parameters())
