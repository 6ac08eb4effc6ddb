#!/usr/bin/env python3
"""Checks nnc's numbers against ONNX Runtime, which we did not write.

For every models/*.nn: `nnc init` draws weights, the norm statistics and
PReLU slopes are moved away from their trivial starting values, `nnc export`
writes the inference graph to ONNX, and for batch 1 and 7 the outputs of
`nnc run` (optimized, and with --no-opt) must match ONNX Runtime's within
1e-4 * max(1, max|reference|).

Usage: NNC=target/release/nnc python tests/onnx_crosscheck.py
Needs: pip install -r tests/requirements.txt
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

NNC = os.environ.get("NNC", "target/release/nnc")
TOLERANCE = 1e-4


def nnc(*args):
    done = subprocess.run([NNC, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nnc {' '.join(args)} failed:\n{done.stderr}")


def perturb(path, rng):
    """Moves norm and PReLU parameters off their starting values (1, 0)."""
    tensors = load_file(path)
    for name, t in tensors.items():
        if name.endswith((".running_var", ".norm.weight")):
            tensors[name] = rng.uniform(0.5, 2.0, t.shape).astype(np.float32)
        elif name.endswith((".running_mean", ".norm.bias", ".bias")):
            tensors[name] = rng.uniform(-0.3, 0.3, t.shape).astype(np.float32)
        elif name.endswith(".act.weight"):
            tensors[name] = rng.uniform(0.05, 0.4, t.shape).astype(np.float32)
    save_file(tensors, path)


def input_shape(session):
    return [d for d in session.get_inputs()[0].shape[1:]]


def main():
    rng = np.random.default_rng(0)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(glob.glob("models/*.nn")):
            stem = os.path.splitext(os.path.basename(model))[0]
            weights = os.path.join(tmp, f"{stem}.safetensors")
            onnx_path = os.path.join(tmp, f"{stem}.onnx")
            nnc("init", model, "--seed", "1", "-o", weights)
            perturb(weights, rng)
            nnc("export", model, "--weights", weights, "-o", onnx_path)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            for batch in (1, 7):
                x = rng.standard_normal([batch, *input_shape(session)]).astype(np.float32)
                x_path, y_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
                np.save(x_path, x)
                reference = session.run(None, {"input": x})[0]
                scale = max(1.0, float(np.abs(reference).max()))
                for flags in ([], ["--no-opt"]):
                    nnc("run", model, "--weights", weights, "--input", x_path, "-o", y_path, *flags)
                    ours = np.load(y_path)
                    diff = float(np.abs(ours - reference).max()) if ours.shape == reference.shape else float("inf")
                    ok = diff <= TOLERANCE * scale
                    label = "opt" if not flags else "no-opt"
                    print(f"{'ok  ' if ok else 'FAIL'} {stem:<22} batch {batch} {label:<6} max|diff| {diff:.2e} (scale {scale:.3g})")
                    passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
