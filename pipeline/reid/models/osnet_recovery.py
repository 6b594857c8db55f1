"""Recover a trainable OSNet-x0.25 from the published ONNX export (BatchNorm folded).

The ONNX file of the MSMT17 model is a stronger checkpoint than the ``.pth`` files we
have (CUHK01 Rank-1 71.9 vs 55.5), but its exporter folded every BatchNorm into the
convolution before it (``W' = W * g / s``, ``b' = beta + (b - mu) * g / s``). The
original (W, gamma, beta, mu, sigma) cannot be told apart from W', b', so we choose the
BatchNorm that keeps the function *and* trains well:

* the convolution takes ``W'`` (no bias);
* the BatchNorm gets the statistics the folded convolution's output really has on
  person crops (per-channel mean ``m`` and variance ``v`` over a calibration batch),
  ``gamma = sqrt(v + eps)`` and ``beta = b' + m``.

In eval mode ``gamma (y - m) / sqrt(v + eps) + beta = y + b'``: exactly the ONNX
function. In train mode the batch statistics are close to (m, v), so fine-tuning starts
from the published model instead of from activations re-scaled to unit variance (a BN
initialised to the identity would do that, and lose most of what was learnt in the
first steps). Nodes are matched by their ONNX names, which carry torchreid's module
paths (``/conv3/conv3.0/conv2b/conv2b.1/conv2/Conv``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.reid.models.osnet import OSNet

__all__ = ["recover_osnet"]

log = logging.getLogger(__name__)

_STREAMS = {"conv2a": 0, "conv2b": 1, "conv2c": 2, "conv2d": 3}


def _module_path(node_name: str) -> str | None:
    """ONNX Conv node name -> our module path (the conv), None for gate convs."""
    parts = node_name.strip("/").split("/")[:-1]  # drop the op name ("Conv")
    if parts == ["conv1", "conv"]:
        return "stem.0"
    if parts == ["conv5", "conv"]:
        return "conv5.0"
    m = re.fullmatch(r"conv([234])", parts[0])
    if not m:
        raise ValueError(f"unexpected OSNet ONNX node {node_name!r}")
    stage = int(m.group(1)) - 2
    block = int(parts[1].split(".")[-1])
    if block == 2:  # the transition: convK.2/convK.2.0/conv
        return f"stages.{stage}.transition.0"
    prefix = f"stages.{stage}.blocks.{block}"
    what = parts[2]
    if what == "gate":
        return None
    if what == "conv1":
        return f"{prefix}.reduce.0"
    if what == "conv3":
        return f"{prefix}.expand.0"
    if what == "downsample":
        return f"{prefix}.shortcut.0"
    stream = _STREAMS[what]
    depth = 0 if what == "conv2a" else int(parts[3].split(".")[-1])
    kind = parts[-1]  # conv1 = point-wise, conv2 = depth-wise (+ folded BN)
    return f"{prefix}.streams.{stream}.{depth}.{'pw' if kind == 'conv1' else 'dw'}"


def _bn_after(path: str) -> str:
    """Module path of the BatchNorm that follows the conv at ``path``."""
    if path.endswith(".dw"):
        return path[: -len("dw")] + "bn"
    head, _, index = path.rpartition(".")
    return f"{head}.{int(index) + 1}"


def recover_osnet(onnx_path: Path, calibration: np.ndarray, *,
                  attention: str = "none", **model_kwargs: object) -> OSNet:
    """Build an :class:`OSNet` that computes what ``onnx_path`` computes.

    Args:
        onnx_path: The OSNet-x0.25 ONNX file (input N x 3 x 256 x 128, RGB ImageNet-
            normalised; output 512-d).
        calibration: float32 [N, 3, 256, 128] normalised person crops (a few hundred)
            from which the recovered BatchNorms take their statistics.
        attention: Attention to insert (starts as the identity; see :class:`OSNet`).
        **model_kwargs: Further :class:`OSNet` arguments.

    Returns:
        The model in eval mode; its ``attention="none"`` output equals the ONNX output
        up to float rounding.

    Raises:
        ValueError: the file is not the OSNet-x0.25 graph this expects.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    model = OSNet(attention=attention, **model_kwargs)
    modules = dict(model.named_modules())
    folded: dict[str, torch.Tensor] = {}  # BN path -> folded bias b'
    assigned: set[str] = set()
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        path = _module_path(node.name)
        if path is None:
            continue
        conv = modules[path]
        weight = inits[node.input[1]]
        if tuple(conv.weight.shape) != tuple(weight.shape):
            raise ValueError(f"{onnx_path}: {node.name} has weight {tuple(weight.shape)}, "
                             f"{path} expects {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(weight)
        assigned.add(path)
        if len(node.input) > 2:
            folded[_bn_after(path)] = inits[node.input[2]]
    for block_path, module in modules.items():
        if block_path.endswith(".gate"):
            onnx_prefix = _gate_prefix(block_path)
            for fc in ("fc1", "fc2"):
                getattr(module, fc).weight.data.copy_(inits[f"{onnx_prefix}.{fc}.weight"])
                getattr(module, fc).bias.data.copy_(inits[f"{onnx_prefix}.{fc}.bias"])
    model.fc.weight.data.copy_(inits["fc.0.weight"])
    model.fc.bias.data.copy_(inits["fc.0.bias"])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(model.fc_bn, name).data.copy_(inits[f"fc.1.{name}"])
    expected = {p for p, m in modules.items()
                if isinstance(m, nn.Conv2d) and ".gate." not in p and not p.startswith("inserted")}
    if assigned != expected:
        raise ValueError(f"{onnx_path}: convolutions not found in the graph: "
                         f"{sorted(expected - assigned)[:5]}")
    _calibrate_bns(model, modules, folded, calibration)
    return model.eval()


def _gate_prefix(block_path: str) -> str:
    """``stages.1.blocks.0.gate`` -> torchreid's ``conv3.0.gate``."""
    _, stage, _, block, _ = block_path.split(".")
    return f"conv{int(stage) + 2}.{block}.gate"


@torch.no_grad()
def _calibrate_bns(model: OSNet, modules: dict[str, nn.Module], folded: dict[str, torch.Tensor],
                   calibration: np.ndarray) -> None:
    """Give each recovered BN the statistics of its input on ``calibration``."""
    for path, bias in folded.items():  # placeholder: y + b' in eval mode
        bn = modules[path]
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.data.fill_(float(np.sqrt(1.0 + bn.eps)))
        bn.bias.data.copy_(bias)
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(path: str):
        def record(_module, inputs, _output) -> None:
            x = inputs[0].double()
            stats[path] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))
        return record

    handles = [modules[p].register_forward_hook(hook(p)) for p in folded]
    model.eval()
    try:
        model(torch.as_tensor(calibration, dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
    for path, bias in folded.items():
        bn = modules[path]
        mean, var = stats[path]
        var = var.clamp_min(1e-6)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.data.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.data.copy_((bias.double() + mean).float())
    log.info("recovered %d folded BatchNorms from %d calibration crops", len(folded),
             len(calibration))
