#!/usr/bin/env python3
"""PyTorch's forward + backward on the models of `cargo bench -p nnc-interp --bench grad`, for the ratio.

One step here is what nnc's `Gradients::run` does: a training-mode forward (batch statistics, masks),
softmax cross-entropy from the logits against integer labels (mean over the batch), and the backward
into every parameter's .grad. No optimiser: `../shared/bench/train_peers.py` times whole training
steps (with SGD or Adam), which is issue 14's comparison.

Usage: grad_peers.py [--models seed_tanh,cifar] [--batch 64,2000] [--threads 1,2]
Needs: pip install numpy torch
Prints one row per model x batch x threads: median ms per forward + backward, and of the forward alone.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def seed_tanh():
    sizes = [800 - 50 * i for i in range(11)]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(300, 10))  # the softmax is in the loss, as nnc fuses it
    return nn.Sequential(*layers), (800,)


def cifar():
    chans = [3, 32, 32, None, 64, 64, None, 128, 128]
    layers, c = [], 3
    for spec in chans[1:]:
        if spec is None:
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(c, spec, 3, padding=1, bias=False), nn.BatchNorm2d(spec), nn.ReLU()]
        c = spec
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
    return nn.Sequential(*layers), (3, 32, 32)


MODELS = {"seed_tanh": seed_tanh, "cifar": cifar}


def median_ms(fn, budget_s=4.0, max_reps=200):
    fn()
    fn()
    samples, end = [], time.perf_counter() + budget_s
    for _ in range(max_reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() > end and len(samples) >= 5:
            break
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="seed_tanh,cifar")
    ap.add_argument("--batch", default="64,2000")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    loss_fn = nn.CrossEntropyLoss()
    print(f"torch {torch.__version__}")
    print(f"{'model':10} {'batch':>6} {'threads':>7} {'fwd+bwd ms':>11} {'fwd ms':>9}")
    for name in args.models.split(","):
        for batch in [int(b) for b in args.batch.split(",")]:
            if name == "cifar" and batch > 64:
                continue
            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                torch.manual_seed(0)
                model, shape = MODELS[name]()
                model.train()
                x = torch.randn(batch, *shape)
                y = torch.randint(0, 10, (batch,))

                def step():
                    for p in model.parameters():
                        p.grad = None
                    loss = loss_fn(model(x), y)
                    loss.backward()

                def forward():
                    with torch.no_grad():
                        model(x)

                print(f"{name:10} {batch:6d} {threads:7d} {median_ms(step):11.2f} {median_ms(forward):9.2f}", flush=True)


if __name__ == "__main__":
    main()
