"""Training throughput in segments per second: input pipeline alone, model step alone, and both.

Not a test.  Generates its own featurize-layout dataset (default spectrogram parameters: 128 mel
bands x 130 frames per 3 s segment) in both shard formats, then measures

* ``input``: :func:`training.data.training_dataset` batches drawn with no model (first pass reads
  and decodes the shards; later passes come from the in-memory cache; ``--no-cache`` to measure
  shard decoding every pass);
* ``step``: ``model.train_on_batch`` on one in-memory batch (the model's ceiling);
* ``fit``: ``model.fit`` on the real input pipeline, as ``genreflow train`` runs it.

Runs stand-alone on any machine with the repo and its dependencies (e.g. a GPU box)::

    python benchmarks/train_bench.py --mixed-precision off
    python benchmarks/train_bench.py --mixed-precision on --arch small --batch-size 128

and appends a markdown table to ``--output`` (default ``benchmarks/train_results.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # trainutil: the featurize-layout dataset writer

import trainutil  # noqa: E402
from training.model import DEFAULT_ARCHITECTURE  # noqa: E402
from transforms.spec import SpectrogramParams  # noqa: E402


def _rate(n_segments: int, seconds: float) -> float:
    return n_segments / seconds if seconds > 0 else float("nan")


def bench_input(data_dir: str, *, batch_size: int, batches: int, cache: bool) -> tuple[float, float]:
    """Segments/s of the training pipeline: (first pass from shards, later passes)."""
    from training import data
    from transforms.metadata import read_metadata

    md = read_metadata(data_dir)
    ds, steps = data.training_dataset(data_dir, metadata=md, batch_size=batch_size, cache=cache,
                                      augment=data.Augment(), seed=0)
    it = iter(ds)
    t = time.perf_counter()
    for _ in range(steps):  # one epoch: reads every shard (and fills the cache)
        next(it)
    first = _rate(steps * batch_size, time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return first, _rate(batches * batch_size, time.perf_counter() - t)


def _model(params: SpectrogramParams, *, arch: str, n_classes: int, mixed: bool, steps: int):
    from training.model import build_model, compile_model

    policy = "mixed_float16" if mixed else "float32"
    model = build_model(input_shape=params.mel_shape, n_classes=n_classes, arch=arch, dtype_policy=policy)
    return compile_model(model, learning_rate=1e-3, total_steps=steps, mixed_precision=mixed)


def bench_step(params: SpectrogramParams, *, arch: str, batch_size: int, steps: int, mixed: bool) -> float:
    """Segments/s of ``train_on_batch`` on one resident batch."""
    rng = np.random.default_rng(0)
    x = rng.normal(-40, 10, size=(batch_size, *params.mel_shape)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size)]
    model = _model(params, arch=arch, n_classes=10, mixed=mixed, steps=steps + 3)
    for _ in range(3):
        model.train_on_batch(x, y)
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return _rate(steps * batch_size, time.perf_counter() - t)


def bench_fit(data_dir: str, *, arch: str, batch_size: int, steps: int, mixed: bool) -> float:
    """Segments/s of ``model.fit`` on the training pipeline (after one warm-up epoch)."""
    from training import data
    from transforms.metadata import read_metadata

    md = read_metadata(data_dir)
    ds, _ = data.training_dataset(data_dir, metadata=md, batch_size=batch_size, augment=data.Augment(), seed=0)
    model = _model(md.spectrogram, arch=arch, n_classes=len(md.labels), mixed=mixed, steps=2 * steps)
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    t = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return _rate(steps * batch_size, time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixed-precision", choices=("on", "off"), default="off", help="mixed_float16 model")
    p.add_argument("--arch", default=DEFAULT_ARCHITECTURE, help="architecture name (training.model.ARCHITECTURES)")
    p.add_argument("--batch-size", type=int, default=32, help="segments per batch")
    p.add_argument("--tracks", type=int, default=20, help="tracks per label (10 labels, 10 segments each)")
    p.add_argument("--steps", type=int, default=20, help="timed steps for step and fit")
    p.add_argument("--formats", nargs="+", default=["tfrecord", "parquet"], help="shard formats")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="decode shards every pass")
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "train_results.md"), help="markdown file to append to")
    args = p.parse_args()

    import tensorflow as tf

    mixed = args.mixed_precision == "on"
    params = SpectrogramParams()
    labels = [f"genre{i}" for i in range(10)]
    rows = []
    step = bench_step(params, arch=args.arch, batch_size=args.batch_size, steps=args.steps, mixed=mixed)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            d = os.path.join(tmp, fmt)
            trainutil.write_dataset(d, fmt=fmt, params=params, labels=labels, tracks={"train": args.tracks},
                                    segments_per_track=10, n_shards=4)
            first, cached = bench_input(d, batch_size=args.batch_size, batches=4 * args.steps, cache=args.cache)
            fit = bench_fit(d, arch=args.arch, batch_size=args.batch_size, steps=args.steps, mixed=mixed)
            rows.append((fmt, first, cached, step, fit))
            print(f"{fmt}: input first pass {first:.0f}/s, later passes {cached:.0f}/s; "
                  f"model step {step:.0f}/s; fit {fit:.0f}/s", flush=True)
    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    cmd = "python benchmarks/train_bench.py " + " ".join(sys.argv[1:])
    lines = [
        f"\n### {args.arch}, batch {args.batch_size}, mixed precision {args.mixed_precision}, {device}\n",
        f"`{cmd}` ({args.tracks * 10 * 10} segments of {params.mel_shape[0]}x{params.mel_shape[1]}, "
        f"TF {tf.__version__}, cache {'on' if args.cache else 'off'})\n",
        "| format | input, first pass (seg/s) | input, cached (seg/s) | model step alone (seg/s) | fit end to end (seg/s) |",
        "|---|---|---|---|---|",
    ] + [f"| {f} | {a:.0f} | {b:.0f} | {c:.0f} | {d:.0f} |" for f, a, b, c, d in rows]
    with open(args.output, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"appended to {args.output}")


if __name__ == "__main__":
    main()
