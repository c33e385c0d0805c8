import json, math, sys
from statistics import mean, stdev
T = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 5: 2.5705818}
r = json.load(open(sys.argv[1]))
err = {}
for s in r['runs']:
    err[s['run']] = s['final']['train_error']
def paired(a, b, seeds=(1, 2, 3, 4, 5)):
    d = [err[a % k] - err[b % k] for k in seeds if a % k in err and b % k in err]
    m = mean(d)
    if len(d) < 2: return f"{m:+.2f} (n={len(d)}) {d}"
    h = T[len(d)-1] * stdev(d) / math.sqrt(len(d))
    return f"{m:+.2f} [{m-h:.2f}, {m+h:.2f}] (n={len(d)}) {[round(x,2) for x in d]}"
for lr in ("0.025", "0.05"):
    print(lr, "plain56-plain20", paired(f"plain56-lr{lr}-s%d", f"plain20-lr{lr}-s%d"))
    print(lr, "resnet56-resnet20", paired(f"resnet56-lr{lr}-s%d", f"resnet20-lr{lr}-s%d"))
    print(lr, "resnet56-plain56", paired(f"resnet56-lr{lr}-s%d", f"plain56-lr{lr}-s%d"))
for m in ("plain20", "resnet20", "plain56", "resnet56"):
    print("0.025-0.05", m, paired(f"{m}-lr0.025-s%d", f"{m}-lr0.05-s%d"))
