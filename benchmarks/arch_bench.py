"""Inference and training-step cost of each architecture, side by side in one process (run by hand).

    .venv/bin/python benchmarks/arch_bench.py [--archs hybrid,temporal] [--segments 512] [--repeats 3]

Builds every architecture for the default spectrogram shape (128 mel bands x 130 frames, 10 labels),
then alternates between them ``--repeats`` times: ``predict`` on ``--segments`` random segments
(batch 64) and ``train_on_batch`` on 8 batches of 32.  Reports the best repeat of each in segments
per second and the ratio to the first architecture, and appends a Markdown table to
``benchmarks/train_results.md`` (``--results ''`` to skip).  Alternating keeps the ratios fair on
a shared machine; the absolute rates are not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genreflow.logs import configure_logging  # noqa: E402
from training.model import ARCHITECTURES, DEFAULT_ARCHITECTURE, build_model, compile_model  # noqa: E402
from transforms.spec import SpectrogramParams  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=f"{DEFAULT_ARCHITECTURE},temporal",
                   help=f"comma-separated names from {sorted(ARCHITECTURES)}; ratios are to the first")
    p.add_argument("--segments", type=int, default=512, help="segments per predict call")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats (the best one counts)")
    p.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "train_results.md"),
                   help="Markdown file to append the table to ('' = print only)")
    args = p.parse_args()
    configure_logging()

    shape = SpectrogramParams().mel_shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.segments, *shape)).astype("float32")
    xb = x[:32]
    yb = np.eye(10, dtype="float32")[rng.integers(0, 10, 32)]
    models = {}
    for name in args.archs.split(","):
        model = build_model(input_shape=shape, n_classes=10, arch=name)
        compile_model(model, learning_rate=1e-3, total_steps=1000)
        model.predict(x[:64], verbose=0)
        model.train_on_batch(xb, yb)
        models[name] = model
    infer = {n: [] for n in models}
    step = {n: [] for n in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            t = time.perf_counter()
            model.predict(x, batch_size=64, verbose=0)
            infer[name].append(args.segments / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(8):
                model.train_on_batch(xb, yb)
            step[name].append(8 * 32 / (time.perf_counter() - t))
    first = next(iter(models))
    lines = [
        f"\n### Architectures side by side, CPU ({os.cpu_count()} cores, {platform.machine()})\n",
        f"`python benchmarks/arch_bench.py --archs {args.archs} --segments {args.segments} "
        f"--repeats {args.repeats}` (best of {args.repeats} alternating repeats; load average before: "
        f"{os.getloadavg()[0]:.1f})\n",
        "| architecture | parameters | inference (seg/s) | training step, batch 32 (seg/s) | "
        f"inference vs {first} | step vs {first} |",
        "|---|---|---|---|---|---|",
    ]
    for name, model in models.items():
        lines.append(
            f"| {name} | {model.count_params():,} | {max(infer[name]):.0f} | {max(step[name]):.0f} | "
            f"{max(infer[name]) / max(infer[first]):.2f}x | {max(step[name]) / max(step[first]):.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        with open(args.results, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
