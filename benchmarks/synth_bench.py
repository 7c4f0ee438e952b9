"""Time ``genreflow synth``: N clips of S seconds on W worker processes (run by hand).

    .venv/bin/python benchmarks/synth_bench.py [--clips-per-style 40] [--seconds 10] [--workers 2]
                                               [--formats wav]

Appends one line of JSON per run to ``benchmarks/synth_results.jsonl`` (wall and CPU time, load
average before the run, so a number measured on a shared machine says so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from pipelines.synth import write_collection
from pipelines.synth_styles import STYLE_NAMES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips-per-style", type=int, default=40, help="clips per style (10 styles)")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--formats", default="wav", help="comma-separated formats")
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = write_collection(tmp, clips_per_style=args.clips_per_style, seconds=args.seconds,
                                  formats=args.formats.split(","), workers=args.workers)
        wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    record = {
        "clips": len(result.tracks), "styles": len(STYLE_NAMES), "seconds_per_clip": args.seconds,
        "workers": args.workers, "formats": args.formats, "wall_s": round(wall, 2),
        "cpu_s": round(children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime, 2),
        "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(record))
    with open(os.path.join(os.path.dirname(__file__), "synth_results.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
