"""ResNet-50 trunk and BNNeck head shared by the RGA and PFSA re-id models.

Built from ``torchvision.models.resnet50(weights=None)``: the architecture only,
never downloaded weights (none are available offline; models train from scratch
or from our own .safetensors files).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["BNNeck", "ResNet50Trunk", "stage_channels"]


def stage_channels() -> tuple[int, int, int, int]:
    """Output channels of ResNet-50 layer1..layer4."""
    return (256, 512, 1024, 2048)


class ResNet50Trunk(nn.Module):
    """ResNet-50 without pooling/classifier; layer4 stride configurable.

    With ``last_stride=1`` a 256 x 128 input gives a 16 x 8 final map (stride 16)
    instead of 8 x 4, the usual re-id choice: finer spatial detail for little cost.

    Args:
        last_stride: Stride of layer4 (1 or 2).
    """

    def __init__(self, *, last_stride: int = 1) -> None:
        super().__init__()
        net = torchvision.models.resnet50(weights=None)
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        net.layer4[0].conv2.stride = (last_stride, last_stride)
        net.layer4[0].downsample[0].stride = (last_stride, last_stride)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        # Zero-init the last BN of each residual block: each block starts as identity,
        # which makes training from scratch (no ImageNet weights) markedly more stable.
        for layer in self.layers:
            for block in layer:
                nn.init.zeros_(block.bn3.weight)

    @staticmethod
    def stage_hw(input_hw: tuple[int, int], last_stride: int = 1) -> list[tuple[int, int]]:
        """Spatial size (H, W) after layer1..layer4 for an input of ``input_hw``."""
        h, w = input_hw
        sizes = []
        h, w = (h + 1) // 2, (w + 1) // 2  # conv1, stride 2, pad 3, k 7
        h, w = (h + 1) // 2, (w + 1) // 2  # maxpool, stride 2, pad 1, k 3
        for stride in (1, 2, 2, last_stride):
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
        return sizes


class BNNeck(nn.Module):
    """BatchNorm1d "neck" between the pooled feature and the (training) classifier.

    The shift is frozen at zero (Luo et al., "Bag of Tricks", 2019) so the normalised
    feature stays centred, which suits the cosine metric used at test time.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, D] -> [N, D]."""
        return self.bn(x)
