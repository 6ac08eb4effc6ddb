#!/usr/bin/env python3
"""nnc's seed-MLP forward against ONNX Runtime, measured in one run.

Runs ../shared/bench/peers.py (ONNX Runtime, numpy) on the seed MLP with tanh
(800 -> 750 -> ... -> 300) and then the interpreter's divan benchmark of the
same model (crates/nnc-interp/benches/forward.rs), at batch 1, 64 and 2000
with 1 and 2 threads, and prints the medians and the ratio nnc / ONNX Runtime
as a Markdown table (below 1 means nnc is faster).

Usage (from the repository root):
    python3 -m venv target/venv-bench
    target/venv-bench/bin/pip install numpy onnx onnxruntime threadpoolctl
    target/venv-bench/bin/python bench/compare.py [--peers ../shared/bench/peers.py]
"""
import argparse
import os
import re
import subprocess
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
BATCHES = ("1", "64", "2000")


def peers(script):
    """{(batch, threads): ms} for ONNX Runtime with all optimisations."""
    out = subprocess.run(
        [sys.executable, script, "--models", "seed_tanh", "--batch", ",".join(BATCHES), "--threads", "1,2"],
        check=True, capture_output=True, text=True,
    ).stdout
    times = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == "onnxruntime" and f[1] == "seed_tanh":
            times[(f[2], f[3])] = float(f[4])
    return times


def nnc():
    """{(batch, threads): ms} from the divan benchmark's median column."""
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "nnc-interp", "--bench", "forward"],
        check=True, capture_output=True, text=True,
    ).stdout
    times, threads = {}, None
    # divan prints a tree: a `├─ T` line per thread count (the const
    # parameter), then one row per batch with fastest │ slowest │ median │ …
    for line in out.splitlines():
        m = re.match(r"^[\s│├╰─]*(\d+)\s+(.*)$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(2).split("│")]
        if all(c == "" for c in cells):
            threads = m.group(1)
        elif threads is not None and m.group(1) in BATCHES:
            value, unit = cells[2].split()
            times[(m.group(1), threads)] = float(value) * UNITS[unit]
    return times


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default=os.path.join(here, "..", "..", "shared", "bench", "peers.py"))
    args = ap.parse_args()
    ort = peers(args.peers)
    ours = nnc()
    print("| batch | threads | ONNX Runtime (ms) | nnc (ms) | nnc / ORT |")
    print("|---:|---:|---:|---:|---:|")
    worst = 0.0
    for threads in ("1", "2"):
        for batch in BATCHES:
            key = (batch, threads)
            if key not in ort or key not in ours:
                sys.exit(f"missing a measurement for batch {batch}, {threads} threads")
            ratio = ours[key] / ort[key]
            worst = max(worst, ratio)
            print(f"| {batch} | {threads} | {ort[key]:.3f} | {ours[key]:.3f} | {ratio:.2f} |")
    print(f"\nworst ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
