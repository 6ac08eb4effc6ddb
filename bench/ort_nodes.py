#!/usr/bin/env python3
"""ONNX Runtime's time per node of a model, from its own profiler.

For the layer-by-layer comparisons in the README: run a model that
`nnc export` wrote under ONNX Runtime with profiling on, and print the
median time of each node (after its graph optimisations, so the convs
are NCHWc and the residual sums fused) over the runs.

Usage: ort_nodes.py MODEL.onnx [--batch 64] [--threads 1] [--runs 30]
Needs: pip install numpy onnxruntime
"""
import argparse
import collections
import json
import os
import statistics

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    x = np.full([args.batch] + list(feed.shape[1:]), 0.1, dtype=np.float32)
    for _ in range(args.runs):
        session.run(None, {feed.name: x})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    times = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
    total = 0.0
    print(f"{'node':40s} {'op':20s} {'median us':>10s}")
    for (name, op), durations in times.items():
        median = statistics.median(durations[len(durations) // 5:])  # the first runs warm up
        total += median
        print(f"{name:40s} {op:20s} {median:10.0f}")
    print(f"{'total':61s} {total:10.0f}")


if __name__ == "__main__":
    main()
