#!/usr/bin/env python3
"""The Python PyTorch reference for `reslab bench`: the same CIFAR-style networks, written as a PyTorch user
writes them (an nn.Module, torchvision transforms, a DataLoader), timed the same way.

    bench_pytorch.py --models resnet20,resnet56 --batch 128 --epoch --train-size 8192 --json
    bench_pytorch.py --check FILE      # FILE from `reslab bench --model M --export-check FILE`

The benchmark prints, per model, the keys of `reslab bench --json`: train_img_per_s (the training step on one
synthetic batch), epoch_img_per_s (a whole epoch of Fashion-MNIST through a DataLoader with random crops and
flips), eval_img_per_s (inference mode), macs_per_s and peak_rss_mb.

--check loads reslab's freshly initialised weights into this script's network, replays reslab's two SGD steps
on reslab's batch and compares the losses and the parameter count: it exits 1 when they differ, so a speed
comparison is between two programs that compute the same thing.
"""

import argparse
import gzip
import json
import os
import re
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


# --- the networks (He et al. 2015, Section 4.2): 6n+2 layers, 16/32/64 filters, option A shortcuts ---------


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, residual):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.residual = residual
        self.stride = stride
        self.extra = planes - in_planes

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
            if self.extra > 0:  # option A: the identity, zero-padded with the new channels
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
            out = out + shortcut
        return F.relu(out)


class CifarNet(nn.Module):
    def __init__(self, depth, residual, in_channels=3, classes=10):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth {depth}: the CIFAR networks have 6n+2 layers (20, 32, 44, 56, 110, 1202)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, residual))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def build(name, in_channels, classes):
    m = re.fullmatch(r"(resnet|plain)(\d+)", name)
    if not m:
        raise ValueError(f"model '{name}': expected resnetN or plainN (N = 6n+2)")
    return CifarNet(int(m.group(2)), m.group(1) == "resnet", in_channels, classes)


def count_macs(model, shape):
    """Multiply-adds of one forward pass of one example: convolutions and the classifier."""
    total = [0]

    def hook(module, _inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output[0].numel() * k
        else:
            total[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1,) + tuple(shape), device=next(model.parameters()).device))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total[0]


# --- the data: Fashion-MNIST as torchvision's MNIST classes read it, with the paper's augmentation ---------


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class FashionMNIST(Dataset):
    def __init__(self, root, train, transform, size=0):
        prefix = "train" if train else "t10k"
        self.images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
        self.labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
        if size:
            self.images, self.labels = self.images[:size], self.labels[:size]
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i], mode="L")
        return self.transform(image), int(self.labels[i])


def train_transform():
    return transforms.Compose(
        [
            transforms.RandomCrop(28, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((FASHION_MEAN,), (FASHION_STD,)),
        ]
    )


# --- timing -----------------------------------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name, args, device):
    torch.manual_seed(0)
    net = build(name, 1, 10).to(device)
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    # torch.compile (PyTorch 2): the inductor backend generates C++ kernels for the CPU with this machine's
    # compiler, during the untimed warm-up steps (training, then again for eval mode).
    model = torch.compile(net) if args.compile else net
    inputs = torch.randn(args.batch, 1, 28, 28, device=device).contiguous(memory_format=memory)
    targets = torch.randint(0, 10, (args.batch,), device=device)

    def step(x, y):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(args.warmup):
        step(inputs, targets)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.iterations):
        step(inputs, targets)
    sync(device)
    step_rate = args.batch * args.iterations / (time.perf_counter() - start)

    epoch_rate = None
    if args.epoch:
        dataset = FashionMNIST(args.data, True, train_transform(), args.train_size)
        start = time.perf_counter()
        loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                            drop_last=True, pin_memory=device.type == "cuda")
        images = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory)
            step(x, y.to(device, non_blocking=True))
            images += y.numel()
        sync(device)
        epoch_rate = images / (time.perf_counter() - start)

    model.eval()
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(inputs)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iterations):
            model(inputs)
        sync(device)
        eval_rate = args.batch * args.iterations / (time.perf_counter() - start)

    macs = count_macs(net, (1, 28, 28))
    return {
        "model": name,
        "dataset": "fashion-mnist",
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "channels_last": args.channels_last,
        "workers": args.workers,
        "train_img_per_s": step_rate,
        "epoch_img_per_s": epoch_rate,
        "eval_img_per_s": eval_rate,
        "macs_per_s": step_rate * 3.0 * macs,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_scope": "process",
        "params": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__,
        "compile": args.compile,
    }


# --- the equivalence check --------------------------------------------------------------------------------


def check(path, device, tolerance):
    try:
        (name, param_names, params, buffer_names, buffers, inputs, targets, losses, count, channels_last,
         libtorch) = torch.load(path, weights_only=False)  # reslab's own file: a tuple, not just tensors
    except Exception as e:  # a missing, truncated or foreign file
        sys.exit(f"error: {path}: not a reslab --export-check file: {e}")
    model = build(name, inputs.shape[1], params[-1].shape[0]).to(device)
    ours = list(model.named_parameters())
    our_buffers = list(model.named_buffers())
    problems = []
    if len(ours) != len(params) or len(our_buffers) != len(buffers):
        problems.append(f"{len(ours)} parameters and {len(our_buffers)} buffers here, reslab has "
                        f"{len(params)} and {len(buffers)}")
    with torch.no_grad():
        for (our_name, p), their_name, value in zip(ours + our_buffers, list(param_names) + list(buffer_names),
                                                    list(params) + list(buffers)):
            if p.shape != value.shape:
                problems.append(f"{our_name} {tuple(p.shape)} here, reslab's {their_name} is {tuple(value.shape)}")
            else:
                p.copy_(value)
    ours_count = sum(p.numel() for p in model.parameters())
    if ours_count != count:
        problems.append(f"{ours_count} parameters here, reslab has {count}")
    if problems:
        print("\n".join("mismatch: " + p for p in problems))
        return 1
    # The layout reslab computed in: the same arithmetic, in the same order, on both sides.
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = inputs.to(device).contiguous(memory_format=memory), targets.to(device)
    model.train()
    ours_losses = []
    for s in range(3):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        ours_losses.append(loss.item())
        if s == 2:
            break
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        ours_losses.append(F.cross_entropy(model(x), y).item())
    theirs = losses.tolist()
    # NCHW with the same thread count is bit-identical on both sides: every loss must agree to `tolerance`
    # (1e-6 leaves room for printing; the evaluation-mode loss, which reads BN running statistics that three
    # batches have barely moved, 100 times that). In channels-last oneDNN's reductions depend on the thread
    # split, and two SGD steps at lr 0.1 from a fresh net grow that rounding chaotically (1e-5 to 1e-3): only
    # the first loss is compared, at 1e-5; the rest are shown.
    # Another LibTorch (PyTorch 2.x against Debian's 1.13) brings another oneDNN, whose NCHW convolutions round
    # differently too: the loss before and after one step must agree (1e-6 and 1e-5: the same net, the same
    # update), and the second step's chaotic growth of that rounding is shown, not compared.
    same_library = torch.__version__.split(".")[:2] == str(libtorch).split(".")[:2]  # 1.13.1 and 1.13.0: one
    labels = ["start", "after one step", "after two", "eval after two"]
    if channels_last:
        limits = [tolerance if tolerance is not None else 1e-5] + [None] * 3
    elif not same_library:
        tol = tolerance if tolerance is not None else 1e-6
        limits = [tol, 10 * tol, None, None]
    else:
        tol = tolerance if tolerance is not None else 1e-6
        limits = [tol] * 3 + [100 * tol]
    layout = "channels-last" if channels_last else "NCHW"
    library = "" if same_library else f"; PyTorch {torch.__version__} here, LibTorch {libtorch} in reslab"
    print(f"{name}: {count} parameters on both sides ({device}, {layout}{library})")
    ok = True
    for label, a, b, limit in zip(labels, ours_losses, theirs, limits):
        rel = abs(a - b) / max(abs(b), 1e-12)
        if limit is not None:
            ok = ok and rel <= limit
        bound = f"at most {limit:.0e}" if limit is not None else "shown, not compared"
        print(f"  loss {label:15s} python {a:.6f}  reslab {b:.6f}  relative difference {rel:.1e} ({bound})")
    print("  same computation" if ok else "  DIFFERENT")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20", help="comma-separated, e.g. resnet20,resnet56")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: every core)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--channels-last", action="store_true", help="channels-last layout (default NCHW)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (PyTorch 2; compiled during the warm-up steps)")
    parser.add_argument("--epoch", action="store_true", help="also time a whole epoch through a DataLoader")
    parser.add_argument("--train-size", type=int, default=0, help="training examples in the epoch (0: all)")
    parser.add_argument("--data", default=FASHION_DIR, help="folder of Fashion-MNIST's gzipped IDX files")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--check", metavar="FILE", help="compare with `reslab bench --export-check FILE`")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative loss difference for --check (default 1e-6 NCHW, 1e-5 channels-last)")
    args = parser.parse_args()
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit(f"error: --compile needs PyTorch 2 (this is {torch.__version__}); scripts/torch2-venv installs it")
        args.warmup = max(args.warmup, 3)  # compilation happens in the first steps
    torch.set_num_threads(args.threads if args.threads > 0 else os.cpu_count())
    device = torch.device(args.device)
    if args.check:
        return check(args.check, device, args.tolerance)
    if args.batch <= 0 or args.iterations <= 0 or args.warmup < 0:
        sys.exit("error: --batch and --iterations must be positive, --warmup non-negative")
    if args.epoch and not os.path.isdir(args.data):
        sys.exit(f"error: --data {args.data}: no such folder (Fashion-MNIST's gzipped IDX files)")
    rows = [bench_model(name, args, device) for name in args.models.split(",")]
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    else:
        print(f"{'model':12s} {'batch':>6s} {'threads':>8s} {'step img/s':>12s} {'epoch img/s':>12s} "
              f"{'eval img/s':>12s} {'GMAC/s':>10s} {'peak MiB':>10s}")
        for r in rows:
            epoch = f"{r['epoch_img_per_s']:.1f}" if r["epoch_img_per_s"] else "-"
            print(f"{r['model']:12s} {r['batch']:6d} {r['threads']:8d} {r['train_img_per_s']:12.1f} {epoch:>12s} "
                  f"{r['eval_img_per_s']:12.1f} {r['macs_per_s'] / 1e9:10.1f} {r['peak_rss_mb']:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
