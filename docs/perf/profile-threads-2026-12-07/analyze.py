#!/usr/bin/env python3
"""Per-thread shares of a resnet56 step profile (docs/performance.md, "A second profile, per thread").

Made by:
  RESLAB_CACHE_DIR=... perf record -F 249 --call-graph dwarf,16384 -o prof56.data \
      build/apps/reslab bench --model resnet56 --iterations 6 --warmup 2
  perf script -i prof56.data -F tid,ip,sym,dso > prof56.txt
  python3 analyze.py prof56.txt > output.txt
Samples count from the first one in a Winograd product (start-up and the kernel plan left out). The main thread
is the one with most samples. LibTorch's symbols are stripped, so its samples are told apart only by whether a
GOMP_parallel frame is on their stack.
"""
import collections
import re
import sys


def read(path):
    samples, cur = [], None
    for line in open(path):
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
        elif not line[0].isspace():
            cur = {"tid": int(line.split()[0]), "frames": []}
        else:
            m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
            if m and cur is not None:
                cur["frames"].append((m.group(2), m.group(3).split("/")[-1]))
    if cur:
        samples.append(cur)
    return samples


WINOGRAD_LEAVES = ("update_rows", "update_block", "input_tile", "output_tile", "gradient_tile", "list_tiles",
                   "convolve<", "accumulate_weight_gradient<")
WINOGRAD_CALLERS = ("convolve<", "accumulate_weight_gradient<", "convolve_tensor", "weight_gradient")


def category(s):
    leaf_sym, leaf_dso = s["frames"][0] if s["frames"] else ("", "?")
    names = " ".join(f[0] for f in s["frames"])
    if "__cxa_finalize" in names:
        return "exit"
    if leaf_dso.startswith("libgomp"):
        if any(k in names for k in WINOGRAD_CALLERS):
            return "libgomp: waiting at the end of a Winograd region"
        return "libgomp: waiting at the end of another region"
    if any(k in leaf_sym for k in WINOGRAD_LEAVES):
        return "the Winograd kernels"
    if leaf_sym.startswith(("reslab::(anonymous namespace)::convolve_tensor",
                            "reslab::(anonymous namespace)::weight_gradient")):
        return "the Winograd weights' transforms and untransform (one thread)"
    if leaf_dso.startswith("libc.so") or "unlink_chunk" in leaf_sym:
        return "libc (malloc, free, memset)"
    if leaf_dso.startswith("libdnnl"):
        return "oneDNN"
    if leaf_dso.startswith("[kernel"):
        return "the operating system's kernel"
    if "GOMP_parallel" in names:
        return "LibTorch inside a parallel region"
    return "LibTorch outside any parallel region"


def main(path):
    samples = read(path)
    first = next(i for i, s in enumerate(samples) if any("update_rows" in f[0] for f in s["frames"]))
    steady = samples[first:]
    tids = collections.Counter(s["tid"] for s in steady).most_common(2)
    print(f"{len(samples)} samples, {len(steady)} from the first Winograd product on")
    (main_tid, main_n), (worker_tid, worker_n) = tids
    waits = sum(1 for s in steady if s["tid"] == worker_tid and s["frames"] and s["frames"][0][1].startswith("libgomp"))
    print(f"worker thread: {worker_n} samples, {waits} in libgomp ({100 * waits / worker_n:.1f}%)")
    counts = collections.Counter(category(s) for s in steady if s["tid"] == main_tid)
    print(f"main thread: {main_n} samples")
    for name, n in counts.most_common():
        print(f"  {100 * n / main_n:5.1f}%  {n:5d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
