#!/usr/bin/env bash
# Weights in and out of PyTorch, checked by PyTorch itself: torchvision's own resnet18 and resnet50 state_dicts
# (freshly built, BN statistics and affine values randomised so that they matter) imported, probed and exported
# again, each giving torchvision's logits on the same batch; trained CIFAR-style runs of every block variant
# exported and run by scripts/reslab_torch.py with reslab's logits; and hostile files refused by name.
# Usage: test_interop.sh path/to/reslab
set -uo pipefail
reslab=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/tests/check.sh"
python=${RESLAB_PYTHON:-/usr/bin/python3}
"$python" -c "import torch, torchvision" 2>/dev/null ||
  { echo "FAIL: $python has no torch and torchvision (scripts/install-deps installs python3-torch and python3-torchvision)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export PYTHONPATH="$root/scripts"

# torchvision's files, its logits on a batch, and an Imagenette-like folder (two of ImageNet's classes).
"$python" - <<'PY' || { echo "FAIL: torchvision could not write its files"; exit 1; }
import torch, torchvision
torch.manual_seed(7)
for name in ["resnet18", "resnet50"]:
    net = getattr(torchvision.models, name)()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3); m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
    torch.save(net.state_dict(), f"{name}.pth")
    if name == "resnet18":
        torch.save(net, "module.pth")  # a whole pickled module: refused
        torch.save({"epoch": 3, "state_dict": net.state_dict()}, "checkpoint.pth")
        sd = net.state_dict()
        sd["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
        torch.save(sd, "misshapen.pth")
PY
make_image_folder folder n01440764 n03888605

# Logits of torchvision's own module with FILE's weights, on the batch of CHECK, against reslab's on it.
same_logits() {  # torchvision_name weights.pth check.pth [original.pth]
  "$python" - "$@" <<'PY'
import sys, torch, torchvision
name, weights, check = sys.argv[1:4]
batch = torch.load(check, weights_only=True)
def logits(path):
    net = getattr(torchvision.models, name)()
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        return net.eval()(batch["input"])
ours = batch["logits"]
scale = max(1.0, ours.abs().max().item())
for path in sys.argv[3 + 1:] + [weights]:
    d = (logits(path) - ours).abs().max().item() / scale
    print(f"{path}: torchvision's logits differ from reslab's by {d:.3g} (relative)")
    assert d < 1e-4, d
PY
}

for net in resnet18 resnet50; do
  check "import $net" 0 "Imported $net.pth as $net.* 1000 classes" -- \
    "$reslab" import "$net.pth" --model "$net" --out "$net" --class-index "$root/scripts/imagenette_classes.json" --data folder
  check "export $net" 0 "torchvision.models.$net\(num_classes=N\)" -- "$reslab" export "$net" --to "out/$net.pth"
  check "torchvision runs the export of $net as reslab does" 0 "differ from reslab's" -- \
    same_logits "$net" "out/$net.pth" "out/$net.check.pth" "$net.pth"
  check "reslab_torch.py check $net" 0 "OK" -- "$python" "$root/scripts/reslab_torch.py" check "out/$net.pth"
done
check "resnet50 is torchvision's v1.5" 0 "resnet50-torchvision" -- cat resnet50/config.json
check "config records torchvision's normalisation" 0 '"mean": \[' -- \
  "$python" -c "import json; print(json.dumps(json.load(open('resnet18/config.json'))['data']))"

# Every probe reads the imported net on the folder (labels 0 and 701 of 1000), with small settings.
check "analyze all on imported resnet18" 0 "refinement: resnet18" -- \
  "$reslab" analyze all resnet18 --threads 2 --no-plot --batch 4 --samples 2 --points 8 --lines 2 --max-lag 2 --out probes
for probe in responses grad_norms grad_snr shattered lesions paths refinement; do
  check "probe $probe written" 0 "\"source\": \"trained\"" -- cat "probes/$probe.json"
done
check "analyze --dataset must be the run's" nonzero "config.json says the run's data is 'image-folder'" -- \
  "$reslab" analyze responses resnet18 --dataset cifar10 --no-plot

# Trained CIFAR-style runs of each block variant: the Python module gives reslab's logits.
for model in resnet8 plain8 preact8 resnet8-fixup resnet8-noaffine resnet8-bnskipinit resnet11-bottleneck resnet5-k1; do
  "$reslab" train --model "$model" --iterations 3 --train-size 256 --test-size 64 --batch 32 --threads 2 \
    --out "runs/$model" >"train-$model.log" 2>&1 || { cat "train-$model.log"; echo "FAIL: train $model"; failures=$((failures + 1)); }
  check "export $model" 0 "CIFAR reference's names" -- "$reslab" export "runs/$model" --to "cifar/$model.pth"
  check "reslab_torch.py check $model" 0 "OK" -- "$python" "$root/scripts/reslab_torch.py" check "cifar/$model.pth"
done
"$reslab" train --model resnet8 --shortcut B --iterations 3 --train-size 256 --test-size 64 --batch 32 --threads 2 \
  --out runs/resnet8-B >/dev/null 2>&1
check "export resnet8 option B" 0 "CIFAR reference's names" -- "$reslab" export runs/resnet8-B --to cifar/b.pth
check "option B names its projection 'shortcut'" 0 "layer2.0.shortcut.0.weight" -- \
  "$python" -c "import torch; print(list(torch.load('cifar/b.pth', weights_only=True)))"
check "reslab_torch.py check option B" 0 "OK" -- "$python" "$root/scripts/reslab_torch.py" check cifar/b.pth
# An export imported again is the same net: its check logits are the first export's.
check "import an export" 0 "Imported cifar/b.pth as resnet8" -- "$reslab" import cifar/b.pth --model resnet8 --out back
check "export it again" 0 "Exported" -- "$reslab" export back --to again.pth
check "same logits after the round trip" 0 "same" -- "$python" -c "
import torch
a, b = torch.load('cifar/b.check.pth', weights_only=True), torch.load('again.check.pth', weights_only=True)
assert torch.equal(a['input'], b['input']) and torch.allclose(a['logits'], b['logits'], rtol=1e-5, atol=1e-5)
print('same')"

# Hostile and wrong files: refused by name, with a non-zero exit, and no run folder written.
check "a pickled module is refused" nonzero "torchvision.models.resnet.ResNet.*save model.state_dict\(\) instead" -- \
  "$reslab" import module.pth --model resnet18 --out bad1
check "a training checkpoint is refused" nonzero "checkpoint.pth: a dict whose values are not all tensors \(keys: epoch, state_dict\)" -- \
  "$reslab" import checkpoint.pth --model resnet18 --out bad2
check "the wrong model names the first missing key" nonzero "resnet18.pth: no key 'layer1.0.conv3.weight'" -- \
  "$reslab" import resnet18.pth --model resnet50 --out bad3
check "a misshapen key is named with both shapes" nonzero "key 'layer1.0.conv2.weight' has shape \[64, 64, 1, 1\]; this model's is \[64, 64, 3, 3\]" -- \
  "$reslab" import misshapen.pth --model resnet18 --out bad4
head -c 100000 resnet18.pth >truncated.pth
check "a truncated file is refused" nonzero "truncated.pth: truncated or not a ZIP archive" -- \
  "$reslab" import truncated.pth --model resnet18 --out bad5
check "a run folder without model.pt" nonzero "model.pt: missing" -- bash -c "mkdir -p empty && cp resnet18/config.json empty/ && '$reslab' export empty --to e.pth"
check "an unknown model" nonzero "import: --model" -- "$reslab" import resnet18.pth --model resnet19 --out bad6
for d in bad1 bad2 bad3 bad4 bad5 bad6; do
  [[ -e $d ]] && { echo "FAIL: $d was written"; failures=$((failures + 1)); }
done

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
