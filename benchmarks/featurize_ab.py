"""Side-by-side featurize throughput of two checkouts (e.g. before/after a change), on real clips.

Runs ``python -m pipelines.featurize`` of each checkout alternately (1 worker process, multi-process
mode, as a user would) on N and 3N hard links of the GTZAN-dev clips in ``../shared/audio/gtzan-dev``,
twice each, and reports the marginal cost per clip ((3N run - N run) / 2N) in wall and CPU time,
so start-up cost and the machine's other load are separated from the per-clip rate.

    .venv/bin/python benchmarks/featurize_ab.py --before /path/to/old/worktree --after . --clips 200
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def link_corpus(folder: str, clips: int, source: str) -> str:
    files = sorted(glob.glob(os.path.join(source, "*", "*.wav")))
    for i in range(clips):
        src = files[i % len(files)]
        dst = os.path.join(folder, os.path.basename(os.path.dirname(src)), f"c{i // len(files)}-{os.path.basename(src)}")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(src, dst)
    return folder


def run_once(code: str, corpus: str, out: str, extra: list[str]) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.featurize", "--input", f"{corpus}/**/*.wav", "--output", out,
                    "--direct_num_workers", "1", "--direct_running_mode", "multi_processing", *extra],
                   cwd=code, env={**os.environ, "PYTHONPATH": code}, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="checkout measured first in each pair")
    p.add_argument("--after", default=REPO, help="checkout measured second (default: this one)")
    p.add_argument("--clips", type=int, default=200, help="clips of the small run; the large run has 3x (default 200)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats (default 2)")
    p.add_argument("--source", default=os.path.join(os.path.dirname(REPO), "shared", "audio", "gtzan-dev"),
                   help="GTZAN-layout folder of clips to link (default ../shared/audio/gtzan-dev)")
    p.add_argument("--featurize-args", default="",
                   help="more featurize options for both checkouts, one string (e.g. \"--segment-hop-seconds 3\" "
                        "to compare at the same segment hop across the default's change)")
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="featurize-ab-")
    sizes = {n: link_corpus(os.path.join(work, f"c{n}"), n, args.source) for n in (args.clips, 3 * args.clips)}
    seconds = 30.0 * 1  # GTZAN clips are 30 s
    res: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for rep in range(args.repeats):
        for n, corpus in sizes.items():
            for name, code in (("before", args.before), ("after", args.after)):
                wall, cpu = run_once(os.path.abspath(code), corpus, os.path.join(work, "out"),
                                     shlex.split(args.featurize_args))
                res.setdefault((name, n), []).append((wall, cpu))
                print(f"{name:6s} {n:5d} clips, repeat {rep}: wall {wall:.1f} s, CPU {cpu:.1f} s", flush=True)
    small, large = args.clips, 3 * args.clips
    for name in ("before", "after"):
        w = [statistics.median(x[0] for x in res[(name, n)]) for n in (small, large)]
        c = [statistics.median(x[1] for x in res[(name, n)]) for n in (small, large)]
        dw, dc = (w[1] - w[0]) / (large - small), (c[1] - c[0]) / (large - small)
        print(f"{name}: marginal {dw * 1000:.1f} ms/clip wall = {seconds / dw:.0f}x real time per worker; "
              f"{dc * 1000:.1f} ms/clip CPU = {seconds / dc:.0f}x real time per CPU second; "
              f"{large} clips in {w[1]:.1f} s wall, {c[1]:.1f} s CPU")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
