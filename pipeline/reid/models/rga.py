"""Relation-Aware Global Attention network (Zhang et al., CVPR 2020), our implementation.

A ResNet-50 (last stride 1) whose four stages are each followed by RGA modules:

* **RGA-S** (spatial): every position is a node. Pairwise affinities r(i, j) between
  embedded features of positions i and j are gathered for each node in both
  directions (row i: "i to all", column i: "all to i"), giving a 2·HW vector per
  position; it is compressed by a 1x1 conv and stacked with a channel-pooled
  embedding of the node's own feature, then a shallow 1x1-conv net maps it to one
  scalar per position, squashed by a sigmoid into a spatial attention map.
* **RGA-C** (channel): the same on channels as nodes (each node's feature is its
  HW-long response map), producing one sigmoid weight per channel.

RGA-S runs before RGA-C in variant "sc". Because the relation vector has one entry
per position, the modules are tied to the input size (``input_hw``).

The pooled 2048-d feature goes through a BNNeck; the embedding is its L2-normalised
output (the same in training and evaluation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.reid.models.resnet import BNNeck, ResNet50Trunk, stage_channels

__all__ = ["RGAModule", "RGANet"]

VARIANTS = ("s", "c", "sc")


def _conv_bn_relu(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _RelationAttention(nn.Module):
    """Attention over one kind of node (positions or channels).

    Input is arranged as [N, F, K, 1]: K nodes, each with an F-dim feature (F = C
    for positions, F = HW for channels). Output: [N, 1, K, 1] attention logits.
    """

    def __init__(self, feat_dim: int, num_nodes: int, *, cha_ratio: int, spa_ratio: int,
                 down_ratio: int) -> None:
        super().__init__()
        inter = max(feat_dim // cha_ratio, 1)
        rel = max(num_nodes // spa_ratio, 1)
        self.theta = _conv_bn_relu(feat_dim, inter)
        self.phi = _conv_bn_relu(feat_dim, inter)
        self.embed_node = _conv_bn_relu(feat_dim, inter)  # the node's own feature
        self.embed_rel = _conv_bn_relu(2 * num_nodes, rel)  # the node's relation vector
        joint = 1 + rel
        self.score = nn.Sequential(
            _conv_bn_relu(joint, max(joint // down_ratio, 1)),
            _conv_bn_relu(max(joint // down_ratio, 1), 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, F, K, 1] -> [N, 1, K, 1] logits."""
        n, _, k, _ = x.shape
        theta = self.theta(x).flatten(2)  # [N, F', K]
        phi = self.phi(x).flatten(2)
        relation = torch.bmm(theta.transpose(1, 2), phi)  # [N, K, K], r(i, j)
        # Node i's relations in both directions, as 2K "channels" located at node i.
        outgoing = relation.transpose(1, 2)  # channel j at node i = r(i, j)
        incoming = relation  # channel j at node i = r(j, i)
        rel = torch.cat([outgoing, incoming], dim=1).view(n, 2 * k, k, 1)
        rel = self.embed_rel(rel)
        node = self.embed_node(x).mean(dim=1, keepdim=True)  # [N, 1, K, 1]
        return self.score(torch.cat([node, rel], dim=1))


class RGAModule(nn.Module):
    """RGA-S and/or RGA-C attention for a [N, C, H, W] feature map of fixed H x W.

    Args:
        channels: C.
        hw: (H, W) of the feature map.
        use_spatial: Apply RGA-S.
        use_channel: Apply RGA-C (after RGA-S when both).
        cha_ratio, spa_ratio, down_ratio: Reduction ratios of the node embedding,
            relation embedding and scoring net (8, 8, 8 in the paper).
    """

    def __init__(self, *, channels: int, hw: tuple[int, int], use_spatial: bool = True,
                 use_channel: bool = True, cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8, identity_init: bool = False) -> None:
        super().__init__()
        self.hw = hw
        # Inserted into a pretrained backbone, the module must start as the identity:
        # the last scoring BN starts at zero (logits 0) and the gate is 2 * sigmoid.
        self.gain = 2.0 if identity_init else 1.0
        positions = hw[0] * hw[1]
        ratios = {"cha_ratio": cha_ratio, "spa_ratio": spa_ratio, "down_ratio": down_ratio}
        self.spatial = (
            _RelationAttention(channels, positions, **ratios) if use_spatial else None
        )
        self.channel = (
            _RelationAttention(positions, channels, **ratios) if use_channel else None
        )
        if identity_init:
            for part in (self.spatial, self.channel):
                if part is not None:
                    nn.init.zeros_(part.score[-1][1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H, W] re-weighted."""
        n, c, h, w = x.shape
        if (h, w) != self.hw:
            raise ValueError(f"RGA module built for {self.hw} feature maps, got {(h, w)}")
        if self.spatial is not None:
            logits = self.spatial(x.view(n, c, h * w, 1))  # [N, 1, HW, 1]
            x = x * (self.gain * torch.sigmoid(logits)).view(n, 1, h, w)
        if self.channel is not None:
            nodes = x.view(n, c, h * w).transpose(1, 2).unsqueeze(-1)  # [N, HW, C, 1]
            logits = self.channel(nodes)  # [N, 1, C, 1]
            x = x * (self.gain * torch.sigmoid(logits)).view(n, c, 1, 1)
        return x


class RGANet(nn.Module):
    """ResNet-50 + RGA modules after every stage, 2048-d embedding.

    Args:
        variant: "s" (spatial only), "c" (channel only) or "sc" (both).
        input_hw: Input (height, width) in pixels; the RGA modules are sized for it.
        last_stride: Stride of ResNet layer4 (1 keeps a 16 x 8 map at 256 x 128).
        cha_ratio, spa_ratio, down_ratio: RGA reduction ratios.
    """

    name = "rga"

    def __init__(self, *, variant: str = "sc", input_hw: tuple[int, int] | list[int] = (256, 128),
                 last_stride: int = 1, cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8) -> None:
        super().__init__()
        if variant not in VARIANTS:
            choices = ", ".join(VARIANTS)
            raise ValueError(f"unknown RGA variant {variant!r}; choose one of: {choices}")
        self.variant = variant
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.last_stride = last_stride
        self.ratios = {"cha_ratio": cha_ratio, "spa_ratio": spa_ratio, "down_ratio": down_ratio}
        self.embedding_dim = 2048
        self.trunk = ResNet50Trunk(last_stride=last_stride)
        sizes = ResNet50Trunk.stage_hw(self.input_hw, last_stride)
        self.rga = nn.ModuleList(
            RGAModule(channels=c, hw=hw, use_spatial="s" in variant,
                      use_channel="c" in variant, **self.ratios)
            for c, hw in zip(stage_channels(), sizes, strict=True)
        )
        self.neck = BNNeck(self.embedding_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable)."""
        return {"variant": self.variant, "input_hw": list(self.input_hw),
                "last_stride": self.last_stride, **self.ratios}

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Un-normalised features.

        Args:
            x: [N, 3, H, W] RGB, ImageNet-normalised, H x W = ``input_hw``.

        Returns:
            {"global": [N, 2048]} the BNNeck output (the classifier's input and,
            L2-normalised, the embedding).
        """
        x = self.trunk.stem(x)
        for layer, attention in zip(self.trunk.layers, self.rga, strict=True):
            x = attention(layer(x))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return {"global": self.neck(pooled)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, 2048] L2-normalised embedding."""
        return F.normalize(self.features(x)["global"], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)
