#!/usr/bin/env python3
"""PyTorch modules for the nets `reslab export` writes, with the same parameter names and the same forward pass.

    reslab export runs/fashion_degradation/resnet20 --to resnet20.pth   # also resnet20.json, resnet20.check.pth
    python3 scripts/reslab_torch.py check resnet20.pth                   # logits equal reslab's on its batch

In Python (this folder on sys.path):

    import reslab_torch
    net = reslab_torch.load("resnet20.pth")   # the module of resnet20.json, weights loaded, in eval mode
    logits = net(images)                      # images: N x C x H x W, normalised as reslab's data

The names are those of the reference implementations: torchvision's for the ImageNet family (layer1.0.conv1,
layer2.0.downsample.0, fc), so a standard torchvision net's file loads into torchvision.models.resnet18() and the
rest as they are; and the common CIFAR ResNet module's for the CIFAR nets (layer1.0.conv1, layer2.0.shortcut.0,
linear). One difference from that CIFAR module: reslab's option-A shortcut puts the identity in the first
channels and zeros after them, where the common module pads zeros on both sides (F.pad(..., (0, 0, 0, 0, p, p))),
so an option-A state_dict gives the same logits only in this module. Fixup's scalars keep their reference
names (bias1a, bias1b, ..., scale), as do a pre-activation net's final_bn and the branch scale.

Needs only torch (1.13 or later): the files load with torch.load(..., weights_only=True), the default from
PyTorch 2.6, since they name nothing but OrderedDict, tensors and their storages.
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "reslab-export"


def _bn(channels, norm):
    return nn.BatchNorm2d(channels, affine=(norm == "bn"))


class Block(nn.Module):
    """One residual block (or its plain twin), as reslab's ResidualBlock: post- or pre-activation, basic or
    bottleneck, with the branch scale and Fixup's scalars where the architecture has them."""

    def __init__(self, in_planes, planes, stride, a, shortcut_name):
        super().__init__()
        self.residual = a["residual"]
        self.preact = a["preact"]
        self.norm = a["norm"]
        self.fixup = a["fixup"]
        self.stride = stride
        bottleneck = a["block"] == "bottleneck"
        self.out_planes = planes * (4 if bottleneck else 1)
        self.in_planes = in_planes
        specs = []  # (in, out, kernel, stride)
        if bottleneck:
            s3 = a["stride_on_3x3"]
            specs = [(in_planes, planes, 1, 1 if s3 else stride), (planes, planes, 3, stride if s3 else 1),
                     (planes, self.out_planes, 1, 1)]
        else:
            for i in range(a["branch_layers"]):
                specs.append((in_planes if i == 0 else planes, planes, 3, stride if i == 0 else 1))
        self.layers = len(specs)
        for i, (cin, cout, k, s) in enumerate(specs, 1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False))
            if self.norm != "none":
                self.add_module(f"bn{i}", _bn(cin if self.preact else cout, self.norm))
            if self.fixup:
                self.register_parameter(f"bias{i}a", nn.Parameter(torch.zeros(1)))
                self.register_parameter(f"bias{i}b", nn.Parameter(torch.zeros(1)))
        self.has_scale = a["branch_scale"] != "none" or self.fixup
        if self.has_scale:
            self.scale = nn.Parameter(torch.ones(1))
        changes = stride != 1 or in_planes != self.out_planes
        self.shortcut_name = shortcut_name
        self.projects = self.residual and (a["shortcut"] == "C" or (a["shortcut"] == "B" and changes))
        if self.projects:
            layers = [nn.Conv2d(in_planes, self.out_planes, 1, stride=stride, bias=False)]
            if self.norm != "none" and not self.preact:
                layers.append(_bn(self.out_planes, self.norm))
            self.add_module(shortcut_name, nn.Sequential(*layers))

    def _shortcut(self, x, pre):
        if self.projects:
            projection = getattr(self, self.shortcut_name)
            if self.preact:
                return projection(pre)
            return projection(x + self.bias1a if self.fixup else x)
        extra = self.out_planes - self.in_planes
        y = x + self.bias1a if self.fixup and (self.stride != 1 or extra > 0) else x
        if self.stride != 1:
            y = y[:, :, ::self.stride, ::self.stride]
        if extra > 0:
            y = F.pad(y, (0, 0, 0, 0, 0, extra))  # reslab's option A: zeros after the identity's channels
        return y

    def forward(self, x):
        h, pre = x, None
        for i in range(1, self.layers + 1):
            bn = getattr(self, f"bn{i}", None)
            if self.preact:
                h = F.relu(bn(h) if bn is not None else h)
                if i == 1:
                    pre = h
            if self.fixup:
                h = h + getattr(self, f"bias{i}a")
            h = getattr(self, f"conv{i}")(h)
            if not self.preact and bn is not None:
                h = bn(h)
            last = i == self.layers
            if last and self.has_scale:
                h = h * self.scale
            if self.fixup:
                h = h + getattr(self, f"bias{i}b")
            if not self.preact and not last:
                h = F.relu(h)
        if not self.residual:
            return h if self.preact else F.relu(h)
        out = h + self._shortcut(x, pre)
        return out if self.preact else F.relu(out)


class ResNet(nn.Module):
    """The net an exported FILE.json describes (its "architecture" object)."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        imagenet = a["stem"] == "imagenet"
        torchvision_names = a["names"] == "torchvision"
        channels, widths = a["input"][0], a["widths"]
        self.conv1 = nn.Conv2d(channels, widths[0], 7 if imagenet else 3, stride=2 if imagenet else 1,
                               padding=3 if imagenet else 1, bias=False)
        if a["norm"] != "none" and not a["preact"]:
            self.bn1 = _bn(widths[0], a["norm"])
        if a["fixup"]:
            self.bias1 = nn.Parameter(torch.zeros(1))
        in_planes = widths[0]
        for s, (width, blocks) in enumerate(zip(widths, a["stage_blocks"])):
            stage = []
            for i in range(blocks):
                block = Block(in_planes, width, 2 if s > 0 and i == 0 else 1, a,
                              "downsample" if torchvision_names else "shortcut")
                stage.append(block)
                in_planes = block.out_planes
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
        self.stages = len(widths)
        if a["preact"] and a["norm"] != "none":
            self.final_bn = _bn(in_planes, a["norm"])
        if a["fixup"]:
            self.bias2 = nn.Parameter(torch.zeros(1))
        self.classifier_name = "fc" if torchvision_names else "linear"
        self.add_module(self.classifier_name, nn.Linear(in_planes, a["classes"]))

    def forward(self, x):
        a = self.a
        x = self.conv1(x)
        if hasattr(self, "bn1"):
            x = self.bn1(x)
        if a["fixup"]:
            x = x + self.bias1
        if not a["preact"]:
            x = F.relu(x)
        if a["stem"] == "imagenet":
            x = F.max_pool2d(x, 3, 2, 1)
        for s in range(1, self.stages + 1):
            x = getattr(self, f"layer{s}")(x)
        if a["preact"]:
            x = F.relu(self.final_bn(x) if hasattr(self, "final_bn") else x)
        x = x.mean((2, 3))
        if a["fixup"]:
            x = x + self.bias2
        return getattr(self, self.classifier_name)(x)


def _companion(path, suffix):
    root, _ = os.path.splitext(path)
    return root + suffix


def read_architecture(path):
    """The export's FILE.json beside FILE.pth; ValueError naming the file when it is not one."""
    arch_path = _companion(path, ".json")
    with open(arch_path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise ValueError(f"{arch_path}: not written by reslab export (format {FORMAT!r}, version 1)")
    return doc


def build(path):
    """The module of FILE.pth's architecture, weights not loaded."""
    return ResNet(read_architecture(path)["architecture"])


def load(path):
    """The module with FILE.pth's weights (strict: every name must match), in eval mode."""
    net = build(path)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def check(path, tolerance=1e-4):
    """Runs the module on the export's check batch; returns the largest difference from reslab's logits, relative
    to their largest magnitude."""
    net = load(path)
    batch = torch.load(_companion(path, ".check.pth"), map_location="cpu", weights_only=True)
    with torch.no_grad():
        logits = net(batch["input"])
    scale = max(1.0, batch["logits"].abs().max().item())
    diff = (logits - batch["logits"]).abs().max().item() / scale
    return diff, diff <= tolerance


def main(argv):
    if len(argv) != 3 or argv[1] != "check":
        print(__doc__.strip().split("\n\n")[0])
        print(f"usage: {argv[0]} check FILE.pth")
        return 2
    diff, ok = check(argv[2])
    print(f"{argv[2]}: largest logit difference from reslab's {diff:.3g} (relative) {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
