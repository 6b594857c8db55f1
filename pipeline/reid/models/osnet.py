"""OSNet-x0.25 (Zhou, Yang, Cavallaro, Xiang, ICCV 2019) as a pretrained backbone, with
the seeds' attention modules inserted after its stages. Our implementation.

Omni-scale network: every block splits into four streams of 1..4 lightweight 3x3
convolutions (1x1 point-wise + 3x3 depth-wise), i.e. receptive fields of 3..9 pixels,
fused by a channel gate shared across the streams. Width x0.25: stem 16 channels,
stages 64 / 96 / 128, a 1x1 ``conv5``, global average pooling and a 512-d fully
connected head (Linear + BatchNorm1d + ReLU) whose output is the embedding.

The weights are data: ``weights/osnet_x0_25_msmt17_recovered.safetensors`` is rebuilt
from the published MSMT17 ONNX file by :mod:`pipeline.reid.models.osnet_recovery`.

Attention (``attention``), inserted after the stages named in ``attention_stages``
(1 = ``conv2`` 64 ch at 1/8, 2 = ``conv3`` 96 ch at 1/16, 3 = ``conv4`` 128 ch at 1/16):

* ``pfsa`` -- the parameter-free spatial attention (Wang et al.): a softmax over the
  positions of the channel-mean activation re-weights the map, ``x * (1 + HW a) / 2``
  (identity where attention is uniform, so the pretrained function is kept at the
  start), and the final pooling is the mean of average and attention pooling.
* ``rga-s`` / ``rga-c`` / ``rga-sc`` -- Relation-Aware Global Attention
  (:class:`pipeline.reid.models.rga.RGAModule`), built so that it starts as the
  identity (zeroed last scoring BN, ``2 * sigmoid``): inserting it does not destroy
  what the backbone learnt.
* ``none`` -- the plain backbone (the peer's function, trainable).

Instance normalisation (``ibn_stages``; 0 = the stem, 1..3 = the stages' blocks): the
first BatchNorm of each named block normalises half of its channels per image instead
(:class:`HalfInstanceNorm`, IBN-Net's "a" variant, Pan et al., ECCV 2018): per-image
contrast and colour statistics, which differ from camera to camera, are removed in the
shallow layers, a lever for cameras unlike the training ones (OSNet-AIN puts IN in the
same place). It changes the pretrained function, so it needs fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pipeline.reid.models.pfsa import spatial_attention
from pipeline.reid.models.rga import RGAModule

__all__ = ["ATTENTIONS", "OSNet"]

ATTENTIONS = ("none", "pfsa", "rga-s", "rga-c", "rga-sc")
WIDTHS = (16, 64, 96, 128)  # stem, conv2, conv3, conv4 (x0.25)
FEATURE_DIM = 512


class ConvBN(nn.Sequential):
    """Convolution (no bias) + BatchNorm2d (+ ReLU)."""

    def __init__(self, cin: int, cout: int, k: int = 1, *, stride: int = 1,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class HalfInstanceNorm(nn.BatchNorm2d):
    """BatchNorm2d whose first ``channels // 2`` channels are instance-normalised (per
    image, no running statistics) with the same affine weight and bias; the state dict is
    a BatchNorm2d's, so pretrained BatchNorm weights load into it unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        half = self.num_features // 2
        rest = super().forward(x)
        inst = F.instance_norm(x[:, :half].float(), eps=self.eps).to(rest.dtype)
        inst = inst * self.weight[:half].view(1, -1, 1, 1).to(rest.dtype) \
            + self.bias[:half].view(1, -1, 1, 1).to(rest.dtype)
        return torch.cat([inst, rest[:, half:]], 1)


def _half_instance(bn: nn.BatchNorm2d) -> HalfInstanceNorm:
    out = HalfInstanceNorm(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    out.load_state_dict(bn.state_dict())
    return out


class LiteConv(nn.Module):
    """1x1 point-wise conv (no BN) -> 3x3 depth-wise conv -> BN -> ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pw = nn.Conv2d(channels, channels, 1, bias=False)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        return F.relu(self.bn(self.dw(self.pw(x))), inplace=True)


class ChannelGate(nn.Module):
    """Squeeze-and-excitation style gate shared by a block's four streams."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> x scaled by a per-channel sigmoid gate."""
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g), inplace=True)))


class OSBlock(nn.Module):
    """Omni-scale residual bottleneck: 1x1 reduce (x1/4), four streams of 1..4
    LiteConvs, shared gate, sum, 1x1 expand (linear), residual add, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 4
        self.reduce = ConvBN(cin, mid)
        self.streams = nn.ModuleList(
            nn.Sequential(*[LiteConv(mid) for _ in range(depth)]) for depth in (1, 2, 3, 4)
        )
        self.gate = ChannelGate(mid)
        self.expand = ConvBN(mid, cout, relu=False)
        self.shortcut = ConvBN(cin, cout, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, cin, H, W] -> [N, cout, H, W]."""
        y = self.reduce(x)
        fused = sum(self.gate(stream(y)) for stream in self.streams)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.expand(fused) + identity, inplace=True)


class Stage(nn.Module):
    """Two OSBlocks, then (optionally) a 1x1 conv + 2x2 average pooling transition."""

    def __init__(self, cin: int, cout: int, *, reduce: bool) -> None:
        super().__init__()
        self.blocks = nn.Sequential(OSBlock(cin, cout), OSBlock(cout, cout))
        self.transition = ConvBN(cout, cout) if reduce else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, cin, H, W] -> [N, cout, H', W'] (H' = H/2 with a transition)."""
        x = self.blocks(x)
        if self.transition is not None:
            x = F.avg_pool2d(self.transition(x), 2)
        return x


class PFSA(nn.Module):
    """Parameter-free spatial attention as an inserted module: ``x * (1 + HW a) / 2``
    with ``a`` the softmax over positions of the channel-mean activation / temperature."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        n, _, h, w = x.shape
        a = spatial_attention(x, self.temperature) * (h * w)
        return x * (0.5 * (1.0 + a))


def _identity_rga(channels: int, hw: tuple[int, int], variant: str) -> nn.Module:
    rga = RGAModule(channels=channels, hw=hw, use_spatial="s" in variant,
                    use_channel="c" in variant, identity_init=True)
    return rga


class OSNet(nn.Module):
    """OSNet-x0.25 backbone + optional attention + 512-d head.

    Args:
        input_hw: Input (height, width); 256 x 128 as published (RGA needs the size).
        attention: One of ``ATTENTIONS``.
        attention_stages: Stages (1..3) followed by the attention module.
        temperature: PFSA softmax temperature.
        ibn_stages: Where half of the first BatchNorm's channels are instance-normalised:
            0 = the stem, 1..3 = every block of that stage.
    """

    name = "osnet"

    def __init__(self, *, input_hw: tuple[int, int] | list[int] = (256, 128),
                 attention: str = "none", attention_stages: tuple[int, ...] | list[int] = (2, 3),
                 temperature: float = 1.0,
                 ibn_stages: tuple[int, ...] | list[int] = ()) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown OSNet attention {attention!r}; choose one of: "
                             f"{', '.join(ATTENTIONS)}")
        stages = tuple(int(s) for s in attention_stages)
        if any(s not in (1, 2, 3) for s in stages):
            raise ValueError(f"attention_stages must be among 1, 2, 3, got {list(stages)}")
        ibn = tuple(sorted({int(s) for s in ibn_stages}))
        if any(s not in (0, 1, 2, 3) for s in ibn):
            raise ValueError(f"ibn_stages must be among 0 (stem), 1, 2, 3, got {list(ibn)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.attention, self.attention_stages = attention, stages
        self.temperature = float(temperature)
        self.embedding_dim = FEATURE_DIM
        c0, c1, c2, c3 = WIDTHS
        self.stem = ConvBN(3, c0, 7, stride=2)
        self.stages = nn.ModuleList([Stage(c0, c1, reduce=True), Stage(c1, c2, reduce=True),
                                     Stage(c2, c3, reduce=False)])
        self.conv5 = ConvBN(c3, c3)
        self.fc = nn.Linear(c3, FEATURE_DIM)
        self.fc_bn = nn.BatchNorm1d(FEATURE_DIM)
        self.ibn_stages = ibn
        if 0 in ibn:
            self.stem[1] = _half_instance(self.stem[1])
        for s in ibn:
            if s:
                for block in self.stages[s - 1].blocks:
                    block.reduce[1] = _half_instance(block.reduce[1])
        self.inserted = nn.ModuleDict()
        sizes = self.stage_hw()
        for s in stages:
            if attention == "pfsa":
                self.inserted[str(s)] = PFSA(self.temperature)
            elif attention.startswith("rga"):
                self.inserted[str(s)] = _identity_rga(WIDTHS[s], sizes[s - 1],
                                                      attention.split("-")[1])

    def stage_hw(self) -> list[tuple[int, int]]:
        """Feature-map (H, W) after stages 1..3 for ``input_hw``."""
        h, w = self.input_hw
        h, w = (h + 1) // 2, (w + 1) // 2  # stem, stride 2
        h, w = (h + 1) // 2, (w + 1) // 2  # max pool, stride 2
        out = []
        for reduce in (True, True, False):
            if reduce:
                h, w = h // 2, w // 2
            out.append((h, w))
        return out

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable)."""
        return {"input_hw": list(self.input_hw), "attention": self.attention,
                "attention_stages": list(self.attention_stages),
                "temperature": self.temperature, "ibn_stages": list(self.ibn_stages)}

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] RGB ImageNet-normalised -> [N, 128, H/16, W/16] (after conv5)."""
        x = F.max_pool2d(self.stem(x), 3, stride=2, padding=1)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if str(i) in self.inserted:
                x = self.inserted[str(i)](x)
        return self.conv5(x)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Un-normalised features: {"global": [N, 512]} (the head's output)."""
        fmap = self.feature_map(x)
        pooled = F.adaptive_avg_pool2d(fmap, 1).flatten(1)
        if self.attention == "pfsa":
            weights = spatial_attention(fmap, self.temperature)
            pooled = 0.5 * (pooled + (fmap * weights).sum(dim=(2, 3)))
        return {"global": F.relu(self.fc_bn(self.fc(pooled)))}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, 512] L2-normalised embedding."""
        return F.normalize(self.features(x)["global"], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)
