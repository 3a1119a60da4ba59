"""Image backbones with an embedding head: a ResNet-18 written out, and a tiny 4-conv net.

``embedding_net("resnet18", dim=512)`` is ``trunk -> linear to dim -> L2-normalise``.  The trunk's
parameter names are those of torchvision's ``resnet18``, so an ImageNet state dict saved from it
(``resnet18-*.pth``) loads with :func:`load_weights` -- from a local file; nothing is downloaded.
"""

from __future__ import annotations

import pathlib

import torch
from torch import nn

from .models import L2Normalize


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (He et al. 2016); 1x1 projection if shapes differ."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 without its classifier: images ``(B, 3, H, W)`` -> pooled features ``(B, 512)``."""

    out_features = 512

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 64, 128, 256, 512]
        for i in range(1, 5):  # layer1 .. layer4, two blocks each; layers 2-4 first halve H and W
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(widths[i - 1], widths[i], stride),
                                                     BasicBlock(widths[i], widths[i])))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class TinyConvNet(nn.Module):
    """Four 3x3 conv-BN-ReLU layers (32, 64, 128, 128 channels), the first three followed by 2x2
    max pooling, then global average pooling: ``(B, 3, H, W)`` -> ``(B, 128)``.  For quick runs."""

    out_features = 128

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate((32, 64, 128, 128)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


#: Backbone name -> trunk class.
BACKBONES = {"resnet18": ResNet18, "tiny": TinyConvNet}


class EmbeddingNet(nn.Module):
    """``trunk`` features -> linear to ``dim`` -> unit sphere."""

    def __init__(self, trunk: nn.Module, dim: int):
        super().__init__()
        self.trunk = trunk
        self.embed = nn.Linear(trunk.out_features, dim)
        self.norm = L2Normalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(self.trunk(x)))


def embedding_net(backbone: str = "resnet18", dim: int = 512) -> EmbeddingNet:
    """A backbone of :data:`BACKBONES` with an L2-normalised linear embedding head to ``dim``."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1; got {dim!r}")
    return EmbeddingNet(BACKBONES[backbone](), dim)


def load_weights(model: EmbeddingNet, path) -> dict:
    """Load a local state dict into ``model.trunk`` (``strict=False``) and say what did not match.

    Accepts a plain state dict or a dict holding one under ``"state_dict"`` or ``"model"``; a
    ``"module."`` prefix (DataParallel) is stripped.  Keys of the trunk must match exactly (a
    torchvision ``resnet18`` state dict does; its ``fc.*`` classifier is reported as unused).
    Returns ``{"loaded": n, "missing": [...], "unexpected": [...]}``; raises ValueError when no
    tensor matches or a shape differs.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt, not torch.save: torch raises several kinds
        raise ValueError(f"{path}: cannot read it as a state dict (truncated, corrupt, or not written by "
                         f"torch.save): {type(err).__name__}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        got = type(state).__name__
        raise ValueError(f"{path} does not hold a state dict (got {got})")  # noqa: TRY004
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("trunk.") for k in state):  # an EmbeddingNet (a lossviz checkpoint)
        state = {k.removeprefix("trunk."): v for k, v in state.items() if k.startswith("trunk.")}
    trunk = type(model.trunk).__name__
    try:
        result = model.trunk.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ: another architecture
        raise ValueError(f"{path} does not fit the {trunk} trunk: {err}") from err
    loaded = len(set(state) & set(model.trunk.state_dict()))
    # BatchNorm's step counters are absent from old checkpoints and harmless: not worth a report.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if loaded == 0:
        raise ValueError(f"none of the {len(state)} tensors in {path} match the {trunk} trunk "
                         f"(its keys look like {sorted(model.trunk.state_dict())[:3]}, "
                         f"the file's like {sorted(state)[:3]})")
    return {"loaded": loaded, "missing": missing, "unexpected": list(result.unexpected_keys)}
