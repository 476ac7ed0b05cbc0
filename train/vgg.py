"""VGG19 feature extractor (Simonyan & Zisserman 2015) for the perceptual losses, defined here.

torchvision is not a dependency (it pins its own torch). The layout copies torchvision's
``vgg19().features`` exactly, so its ImageNet weights load unchanged from a safetensors file whose
keys are ``features.<i>.weight`` / ``features.<i>.bias``. Make that file once on any machine
with torchvision (nothing here downloads):

    from safetensors.torch import save_file
    from torchvision.models import vgg19, VGG19_Weights
    sd = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).state_dict()
    save_file({k: v for k, v in sd.items() if k.startswith("features.")}, "vgg19.safetensors")

Only the layers up to the deepest requested one are built and loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

# torchvision's configuration "E": channels, "M" = 2x2 max-pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    """Names of ``features[i]`` in order: conv1_1, relu1_1, ..., pool5."""
    names, block, conv = [], 1, 0
    for item in _CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return names


LAYER_NAMES = _layer_names()


class VGG19Features(nn.Module):
    """``[B, 3, H, W]`` images in [-1, 1] -> the requested activations (ImageNet-normalised input).

    Frozen and in eval mode; gradients still flow to the input.
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, layers: Sequence[str]) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_NAMES]
        if not layers or unknown:
            raise ValueError(f"perceptual.layers: unknown VGG19 layer(s) {unknown}; known: {', '.join(LAYER_NAMES)}")
        self.layers = tuple(layers)
        last = max(LAYER_NAMES.index(name) for name in layers)
        modules: list[nn.Module] = []
        channels = 3
        for item in _CFG:
            if isinstance(item, str):  # "M"
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*modules[: last + 1])
        self._taps = {LAYER_NAMES.index(name): name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always eval: no dropout or batch norm here, but be explicit

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((images + 1.0) / 2.0 - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._taps:
                out[self._taps[i]] = x
        return out


def load_vgg19(path: str | Path, layers: Sequence[str]) -> VGG19Features:
    """VGG19 features with weights from a local safetensors file (``features.<i>.*`` keys).

    Raises FileNotFoundError / ValueError naming ``--vgg19`` (the option that sets the path).
    """
    from safetensors.torch import load_file

    if not str(path):
        raise FileNotFoundError(
            "the perceptual loss needs VGG19 weights: pass --vgg19 PATH.safetensors (see train/vgg.py "
            "for how to make it), or --perceptual-weight 0 to train without it"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--vgg19 {path}: no such file; pass the VGG19 safetensors file, or --perceptual-weight 0"
        )
    model = VGG19Features(layers)
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith("features.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(
            f"--vgg19 {path}: lacks {len(missing)} tensors the requested layers need (e.g. {missing[0]}); "
            f"it must hold torchvision's vgg19 'features.<i>.weight/bias' keys"
        )
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"--vgg19 {path}: {name} has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}"
            )
    model.load_state_dict({k: state[k].float() for k in expected})
    return model
