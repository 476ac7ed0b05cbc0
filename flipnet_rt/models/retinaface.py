"""RetinaFace MobileNet-0.25 face detector: a PyTorch port of the shipped ONNX export.

The network is biubug6/Pytorch_Retinaface's ``mobilenet0.25`` configuration as re-implemented and
exported by yakhyo/retinaface-pytorch (``retinaface_mv1_0.25``; see ``faces/weights/retinaface/NOTICE.md``).
Batch norms are folded into the convolutions, so every block is a biased ``nn.Conv2d`` followed, or
not, by a LeakyReLU of slope 0.1. The module names follow the ONNX graph's node names (yakhyo's module
paths: ``fx.stage1.0.0``, ``fpn.output1.0``, ``ssh1.conv5X5_1.0``, ``class_head.class_head.0``), which
is how :func:`load_retinaface` finds each convolution's weights.

Input: BGR minus the mean (104, 117, 123), unscaled, ``float32 [B, 3, H, W]`` (any H, W). Outputs, per
anchor (2 per cell; levels of stride 8, 16, 32, each in row-major cell order): ``loc [B, N, 4]``,
``conf [B, N, 2]`` (soft-maxed: background, face), ``landmarks [B, N, 10]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RETINAFACE_ONNX: Path = (
    Path(__file__).resolve().parents[1] / "faces" / "weights" / "retinaface" / "retinaface_mnet025.onnx"
)

ANCHORS = 2  # per cell and level (biubug6's ``min_sizes`` pairs)
FPN_CHANNELS = 64  # biubug6's ``out_channel`` for mobilenet0.25


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, leaky: bool = True) -> nn.Sequential:
    """biubug6's ``conv_bn`` / ``conv_bn1X1`` / ``conv_bn_no_relu`` with the batch norm folded: conv (+ LeakyReLU)."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)
    return nn.Sequential(conv, nn.LeakyReLU(0.1)) if leaky else nn.Sequential(conv)


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    """biubug6's ``conv_dw``: depthwise 3x3 (carries the stride), then pointwise 1x1, each with LeakyReLU."""
    return nn.Sequential(_conv(cin, cin, 3, stride, groups=cin), _conv(cin, cout, 1))


class MobileNetV1(nn.Module):
    """biubug6's ``MobileNetV1`` x0.25 body (yakhyo's ``fx``): three stages of stride 8, 16, 32 whose
    outputs (64, 128, 256 channels) feed the FPN; the classifier head is not part of the detector."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv(3, 8, 3, 2),
            _conv_dw(8, 16, 1),
            _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2),
            _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *(_conv_dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return c1, c2, self.stage3(c2)


class FPN(nn.Module):
    """biubug6's ``FPN``: 1x1 lateral convs to 64 channels, the coarser level upsampled (nearest) to the
    finer one's size and added, then a 3x3 ``merge`` conv (2 merges; the stride-32 level is not merged)."""

    def __init__(self) -> None:
        super().__init__()
        self.output1 = _conv(64, FPN_CHANNELS, 1)
        self.output2 = _conv(128, FPN_CHANNELS, 1)
        self.output3 = _conv(256, FPN_CHANNELS, 1)
        self.merge1 = _conv(FPN_CHANNELS, FPN_CHANNELS)
        self.merge2 = _conv(FPN_CHANNELS, FPN_CHANNELS)

    def forward(self, c1: Tensor, c2: Tensor, c3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p1, p2, p3 = self.output1(c1), self.output2(c2), self.output3(c3)
        p2 = self.merge2(p2 + F.interpolate(p3, size=p2.shape[-2:], mode="nearest"))
        p1 = self.merge1(p1 + F.interpolate(p2, size=p1.shape[-2:], mode="nearest"))
        return p1, p2, p3


class SSH(nn.Module):
    """biubug6's ``SSH`` context module: 3x3 (32 ch), 5x5 as two 3x3 (16 ch) and 7x7 as three 3x3 (16 ch,
    sharing the first with the 5x5 branch), concatenated, then ReLU. The branch outputs have no activation.
    (yakhyo's export evaluates ``conv5X5_1`` twice, the second call being the node ``conv5X5_1.0_1`` with
    the same weights; evaluating it once gives the same numbers.)"""

    def __init__(self, cin: int = FPN_CHANNELS, cout: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.conv3X3 = _conv(cin, cout // 2, leaky=False)
        self.conv5X5_1 = _conv(cin, cout // 4)
        self.conv5X5_2 = _conv(cout // 4, cout // 4, leaky=False)
        self.conv7X7_2 = _conv(cout // 4, cout // 4)
        self.conv7x7_3 = _conv(cout // 4, cout // 4, leaky=False)

    def forward(self, x: Tensor) -> Tensor:
        shared = self.conv5X5_1(x)
        branches = (self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared)))
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """biubug6's ``ClassHead`` / ``BboxHead`` / ``LandmarkHead`` (one 1x1 conv per level, ``2 * width``
    channels), the list registered under ``name`` as in yakhyo's modules; returns ``[B, N, width]``."""

    def __init__(self, name: str, width: int, levels: int = 3) -> None:
        super().__init__()
        self.name, self.width = name, width
        self.add_module(name, nn.ModuleList(nn.Conv2d(FPN_CHANNELS, ANCHORS * width, 1) for _ in range(levels)))

    def forward(self, features: list[Tensor]) -> Tensor:
        convs = cast(nn.ModuleList, self.get_submodule(self.name))
        rows = [conv(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, self.width) for conv, f in zip(convs, features)]
        return torch.cat(rows, dim=1)


class RetinaFace(nn.Module):
    """biubug6's ``RetinaFace`` (``mobilenet0.25``, BN folded): body, FPN, one SSH per level, three heads."""

    def __init__(self) -> None:
        super().__init__()
        self.fx = MobileNetV1()
        self.fpn = FPN()
        self.ssh1, self.ssh2, self.ssh3 = SSH(), SSH(), SSH()
        self.class_head = Head("class_head", 2)
        self.bbox_head = Head("bbox_head", 4)
        self.landmark_head = Head("landmark_head", 10)

    def forward(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p1, p2, p3 = self.fpn(*self.fx(input))
        features = [self.ssh1(p1), self.ssh2(p2), self.ssh3(p3)]
        conf = F.softmax(self.class_head(features), dim=-1)
        return self.bbox_head(features), conf, self.landmark_head(features)


def _module_path(node_name: str) -> str:
    """``/fx/stage1/stage1.0/stage1.0.0/Conv`` -> ``fx.stage1.0.0``: the top module, then the innermost
    scope (which spells the rest of the path); a repeated call's ``_1`` suffix is dropped."""
    scopes = node_name.strip("/").split("/")[:-1]
    path = scopes[0] if len(scopes) == 1 else f"{scopes[0]}.{scopes[-1]}"
    return re.sub(r"_\d+$", "", path)


def load_retinaface(path: Path = RETINAFACE_ONNX) -> RetinaFace:
    """A :class:`RetinaFace` with the weights of the ONNX export at ``path`` (initializers read with
    ``onnx.numpy_helper``; nothing unpickled). Each Conv node is matched to the module its name spells;
    ValueError, naming the file, when a parameter is missing or misshaped or an initializer is unused."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    model = RetinaFace()
    params, modules = dict(model.named_parameters()), dict(model.named_modules())
    values: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def fail(problem: str) -> ValueError:
        return ValueError(f"{path}: not the RetinaFace MobileNet-0.25 export ({problem})")

    for node in (n for n in graph.node if n.op_type == "Conv"):
        module = _module_path(node.name)
        conv = modules.get(module)
        attrs = {
            a.name: list(onnx.helper.get_attribute_value(a)) for a in node.attribute if a.name in ("strides", "pads")
        }
        if isinstance(conv, nn.Conv2d) and attrs != {"strides": [*conv.stride], "pads": [*conv.padding] * 2}:
            raise fail(f"{node.name}: {attrs}, expected stride {conv.stride} and padding {conv.padding}")
        for kind, name in zip(("weight", "bias"), node.input[1:]):
            source = alias.get(name, name)
            key = f"{module}.{kind}"
            if source not in arrays:
                raise fail(f"{node.name}: {kind} {name!r} is not an initializer")
            if key not in params:
                raise fail(f"{node.name}: no parameter {key}")
            array = arrays[source]
            if tuple(array.shape) != tuple(params[key].shape):
                raise fail(f"{key}: shape {tuple(array.shape)}, expected {tuple(params[key].shape)}")
            if key in values and not np.array_equal(values[key], array):
                raise fail(f"{key}: two calls with different weights")
            values[key] = array
            used.add(source)
    missing = [k for k in params if k not in values]
    unused = [k for k in arrays if k not in used]
    if missing:
        raise fail(f"no weights for {missing[0]}")
    if unused:
        raise fail(f"unused initializer {unused[0]}")
    with torch.no_grad():
        for key, array in values.items():
            params[key].copy_(torch.tensor(array))
    return model.float().eval().requires_grad_(False)
