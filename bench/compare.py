#!/usr/bin/env python3
"""nnc's forward passes against ONNX Runtime, measured in one run.

Runs ../shared/bench/peers.py (ONNX Runtime, numpy) on the reference models
(the seed MLP 800 -> 750 -> ... -> 300 with tanh, and the same sizes with
batch norm + ELU), then nnc's divan benchmarks of the same models: the
generated code (benches/generated.rs, through `nnc::model!`) on both, and the
interpreter (crates/nnc-interp/benches/forward.rs) on the tanh one; at batch
1, 64 and 2000 with 1 and 2 threads. Runs all three in turn, --rounds times,
and prints each one's median over the rounds and the ratios
nnc / ONNX Runtime as a Markdown table (below 1 means nnc is faster).

Usage (from the repository root):
    python3 -m venv target/venv-bench
    target/venv-bench/bin/pip install numpy onnx onnxruntime threadpoolctl
    target/venv-bench/bin/python bench/compare.py [--rounds 3] [--peers ../shared/bench/peers.py]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
BATCHES = ("1", "64", "2000")


def peers(script):
    """{(model, batch, threads): ms} for ONNX Runtime with all optimisations."""
    out = subprocess.run(
        [sys.executable, script, "--models", "seed_tanh,seed_bn", "--batch", ",".join(BATCHES), "--threads", "1,2"],
        check=True, capture_output=True, text=True,
    ).stdout
    times = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == "onnxruntime":
            times[(f[1], f[2], f[3])] = float(f[4])
    return times


def divan(cargo_args):
    """{(bench, batch, threads): ms} from a divan benchmark's median column."""
    out = subprocess.run(["cargo", "bench", "-q", *cargo_args], check=True, capture_output=True, text=True).stdout
    times, bench, threads = {}, None, None
    # divan prints a tree: a line per benchmark function, a `├─ T` line per
    # thread count (the const parameter), then one row per batch with
    # fastest │ slowest │ median │ ...
    for line in out.splitlines():
        name = re.match(r"^[\s│├╰─]*([a-z_]+)\s", line)
        if name:
            bench, threads = name.group(1), None
            continue
        m = re.match(r"^[\s│├╰─]*(\d+)\s+(.*)$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(2).split("│")]
        if all(c == "" for c in cells):
            threads = m.group(1)
        elif threads is not None and m.group(1) in BATCHES:
            value, unit = cells[2].split()
            times[(bench, m.group(1), threads)] = float(value) * UNITS[unit]
    return times


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default=os.path.join(here, "..", "..", "shared", "bench", "peers.py"))
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of (ONNX Runtime, generated, interpreter); each cell is the median over rounds")
    args = ap.parse_args()
    # The machine's speed drifts over minutes (shared hosts, turbo), so the
    # peers and nnc take turns rather than each running once in a block.
    rounds = {"ort": [], "generated": [], "interpreted": []}
    for r in range(max(args.rounds, 1)):
        print(f"round {r + 1} of {args.rounds}", file=sys.stderr)
        rounds["ort"].append(peers(args.peers))
        rounds["generated"].append(divan(["--bench", "generated"]))
        rounds["interpreted"].append(divan(["-p", "nnc-interp", "--bench", "forward"]))

    def cell(source, key):
        values = [times[key] for times in rounds[source] if key in times]
        return statistics.median(values) if values else None

    print("| model | batch | threads | ONNX Runtime (ms) | generated (ms) | generated / ORT | interpreter / ORT |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model in ("seed_tanh", "seed_bn"):
        for threads in ("1", "2"):
            for batch in BATCHES:
                key = (batch, threads)
                theirs = cell("ort", (model,) + key)
                ours = cell("generated", (model + "_forward",) + key)
                if theirs is None or ours is None:
                    sys.exit(f"missing a measurement for {model}, batch {batch}, {threads} threads")
                interp = cell("interpreted", ("seed_mlp_forward",) + key) if model == "seed_tanh" else None
                interp_ratio = f"{interp / theirs:.2f}" if interp is not None else "–"
                print(f"| {model} | {batch} | {threads} | {theirs:.3f} | {ours:.3f} | {ours / theirs:.2f} | {interp_ratio} |")


if __name__ == "__main__":
    main()
