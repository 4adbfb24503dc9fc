"""Models: ResNet-20/8 (CIFAR variant of He et al. 2016) and torchvision's ResNet-50."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = act()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            # option B: 1x1 projection (the common CIFAR implementation; +~2k params)
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 (or smaller) inputs: three stages of n blocks, widths w, 2w, 4w."""

    def __init__(self, n: int = 3, width: int = 16, num_classes: int = 10, smooth: bool = False):
        super().__init__()
        act = nn.Softplus if smooth else nn.ReLU  # smooth: for finite-difference checks of hypergradients
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), act())
        layers, cin = [], width
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(_Block(cin, w, stride, act))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        for mod in self.modules():  # He initialisation
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Linear):
                nn.init.kaiming_normal_(mod.weight)
                nn.init.zeros_(mod.bias)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(name: str, num_classes: int = 10, smooth: bool = False, width: int = 16) -> nn.Module:
    if name == "resnet20":
        return CifarResNet(3, width, num_classes, smooth)
    if name == "resnet8":
        return CifarResNet(1, width, num_classes, smooth)
    if name == "resnet50":
        import torchvision
        m = torchvision.models.resnet50(num_classes=num_classes)
        # CIFAR stem: 3x3 conv, no max-pool (32x32 inputs)
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        if smooth:
            for name_, mod in m.named_modules():
                for child_name, child in mod.named_children():
                    if isinstance(child, nn.ReLU):
                        setattr(mod, child_name, nn.Softplus())
        return m
    raise ValueError(f"{name!r} is not a model in ['resnet20', 'resnet8', 'resnet50']")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
