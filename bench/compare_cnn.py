#!/usr/bin/env python3
"""nnc's CNN forward passes against ONNX Runtime, measured in one run.

For each reference CNN (bench/models/cifar_vgg.nn, resnet_mini.nn and
mobile_mini.nn, copies of ../shared/bench/models/, and models/digits_cnn.nn):
draws the weights with `nnc init --seed 0` (the weights `Model::init(0)` and
the interpreter benchmark use), exports them with `nnc export`, times ONNX
Runtime on that file with ../shared/bench/ort_time.py, then runs nnc's divan
benchmarks of the same models: the generated code (benches/generated.rs,
through `nnc::model!`) and the interpreter (crates/nnc-interp/benches/
forward.rs), at batch 1 and 64 with 1 and 2 threads. Each round measures
one model at a time with all three, in turn (ONNX Runtime first in odd
rounds, last in even ones), so that a model's three figures come from the
same minute: on a shared virtual machine the speed of both cores moves by
a fifth or more from one minute to the next, and a round that timed every
model on ONNX Runtime and then every model on nnc compared different
minutes. Prints each cell's median over --rounds rounds and the ratios nnc
/ ONNX Runtime as a Markdown table (below 1 means nnc is faster).

Usage (from the repository root):
    python3 -m venv target/venv-bench
    target/venv-bench/bin/pip install numpy onnxruntime
    target/venv-bench/bin/python bench/compare_cnn.py [--rounds 3] [--ort-time ../shared/bench/ort_time.py]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import divan  # noqa: E402  (the divan table parser)

MODELS = {
    "cifar_vgg": "bench/models/cifar_vgg.nn",
    "resnet_mini": "bench/models/resnet_mini.nn",
    "mobile_mini": "bench/models/mobile_mini.nn",
    "digits_cnn": "models/digits_cnn.nn",
}
BATCHES = ("1", "64")
THREADS = ("1", "2")


def onnx_files(workdir):
    """{model: path of the .onnx nnc exported with the seed-0 weights}."""
    subprocess.run(["cargo", "build", "-q", "--release", "--bin", "nnc"], check=True)
    files = {}
    for model, path in MODELS.items():
        weights = os.path.join(workdir, model + ".safetensors")
        onnx = os.path.join(workdir, model + ".onnx")
        subprocess.run(["target/release/nnc", "init", path, "--seed", "0", "-o", weights], check=True, capture_output=True)
        subprocess.run(["target/release/nnc", "export", path, "--weights", weights, "-o", onnx], check=True, capture_output=True)
        files[model] = onnx
    return files


def ort(script, files):
    """{(model, batch, threads): ms} from ort_time.py on each exported model."""
    times = {}
    for model, onnx in files.items():
        out = subprocess.run(
            [sys.executable, script, onnx, "--batch", ",".join(BATCHES), "--threads", ",".join(THREADS)],
            check=True, capture_output=True, text=True,
        ).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 4 and f[0] == "onnxruntime":
                times[(model, f[1], f[2])] = float(f[3])
    return times


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--ort-time", default=os.path.join(here, "..", "..", "shared", "bench", "ort_time.py"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        files = onnx_files(workdir)
        rounds = {"ort": [], "generated": [], "interpreted": []}
        for r in range(max(args.rounds, 1)):
            print(f"round {r + 1} of {args.rounds}", file=sys.stderr)
            for source in rounds.values():
                source.append({})
            for model, onnx in files.items():
                # The model's benchmark alone (no model's name is part of another's).
                only = f"{model}_forward"
                turns = [
                    ("ort", lambda: ort(args.ort_time, {model: onnx})),
                    ("generated", lambda: divan(["--bench", "generated", "--", only])),
                    ("interpreted", lambda: divan(["-p", "nnc-interp", "--bench", "forward", "--", only])),
                ]
                if r % 2 == 1:
                    turns.reverse()
                for source, measure in turns:
                    rounds[source][-1].update(measure())

    def cell(source, key):
        values = [times[key] for times in rounds[source] if key in times]
        return statistics.median(values) if values else None

    print("| model | batch | threads | ONNX Runtime (ms) | generated (ms) | interpreter (ms) | generated / ORT | interpreter / ORT |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in MODELS:
        for threads in THREADS:
            for batch in BATCHES:
                theirs = cell("ort", (model, batch, threads))
                gen = cell("generated", (model + "_forward", batch, threads))
                interp = cell("interpreted", (model + "_forward", batch, threads))
                if None in (theirs, gen, interp):
                    sys.exit(f"missing a measurement for {model}, batch {batch}, {threads} threads")
                print(f"| {model} | {batch} | {threads} | {theirs:.3f} | {gen:.3f} | {interp:.3f} "
                      f"| {gen / theirs:.2f} | {interp / theirs:.2f} |")


if __name__ == "__main__":
    main()
