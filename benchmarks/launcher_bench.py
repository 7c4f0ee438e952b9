"""What the launchers cost as the catalog grows: graph size, peak memory and time of a Dataflow dry run.

For each job (featurize, label) and each manifest size, a fresh subprocess writes nothing but runs
the job's launcher exactly as a user would (``--manifest M --runner DataflowRunner --dry_run=True``),
captures the Dataflow job the runner built, and reports:

- ``graph_bytes``: the size of the pipeline proto (``job.proto_pipeline.SerializeToString()``), what
  Dataflow's job-graph limit applies to;
- ``peak_rss_mb``: the launcher process's peak resident memory (:func:`peak_rss_mb`);
- ``seconds``: wall time of ``run()``.

Manifests are generated (CSV, one ``gs://`` uri and label per row; ~1 s per million rows) and only
their header is ever read by the launcher.  Usage::

    .venv/bin/python benchmarks/launcher_bench.py --rows 1000,100000,1000000      # writes launcher_results.md
    .venv/bin/python benchmarks/launcher_bench.py --one featurize --rows 1000 --json   # one measurement

The test ``tests/test_catalog_scale.py`` runs ``--one`` at 10^3 and 10^6 rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRY_RUN = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "genreflow-bench", "--region",
           "us-central1", "--temp_location", "gs://bucket-xyz/tmp"]
PARAMS = ["--sample-rate", "8000", "--n-fft", "256", "--hop-length", "128", "--n-mels", "16",
          "--segment-seconds", "0.5"]


def write_manifest(path: str, rows: int) -> str:
    """A CSV manifest of ``rows`` catalog tracks on gs:// (written in ~1 s per million rows)."""
    genres = ("rock", "jazz", "pop", "blues")
    with open(path, "w") as f:
        f.write("uri,label\n")
        chunk = 100_000
        for start in range(0, rows, chunk):
            f.write("".join(f"gs://catalog-bench/audio/{genres[i % 4]}/track-{i:09d}.mp3,{genres[i % 4]}\n"
                            for i in range(start, min(rows, start + chunk))))
    return path


def _model_dir(base: str) -> str:
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))  # the measured checkout's (see --code)
    from tinymodel import save_model_dir, tiny_cnn

    from transforms.spec import SpectrogramParams

    params = SpectrogramParams(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, segment_seconds=0.5,
                               segment_hop_seconds=0.5)
    model_dir = os.path.join(base, "model")
    save_model_dir(tiny_cnn(params, n_labels=4), model_dir, labels=["blues", "jazz", "pop", "rock"], params=params)
    return model_dir


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of ``/proc/self/status`` on Linux.

    Not ``ru_maxrss``: Linux carries the parent's resident size across fork and exec into the
    child's ``ru_maxrss``, so a launcher started from a large process (a pytest run that already
    imported TensorFlow) would report the parent's size.  ``VmHWM`` belongs to the process's own
    address space, which exec replaces.  Elsewhere, ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def measure_one(job: str, manifest: str, work: str, *, output_root: str = "gs://catalog-bench") -> dict[str, float]:
    """Run one launcher in this process (call in a fresh process) and measure it."""
    spec = importlib.util.spec_from_file_location("dataflow_capture", os.path.join(REPO, "tests", "dataflow_capture.py"))
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)  # this checkout's helper, whichever checkout's pipelines are measured
    with capture.captured_dataflow_jobs() as jobs:
        if job == "featurize":
            from pipelines import featurize

            argv = ["--manifest", manifest, "--output", f"{output_root}/features", *PARAMS]
            start = time.perf_counter()
            featurize.run(argv + DRY_RUN)
        else:
            from pipelines import label

            argv = ["--manifest", manifest, "--model-dir", _model_dir(work), "--output", f"{output_root}/labels",
                    "--run-date", "2026-12-01"]
            start = time.perf_counter()
            label.run(argv + DRY_RUN)
        seconds = time.perf_counter() - start
    (built,) = jobs
    return {"graph_bytes": len(built.proto_pipeline.SerializeToString()),
            "peak_rss_mb": peak_rss_mb(), "seconds": seconds}


def measure(job: str, rows: int, *, work: str, output_root: str = "gs://catalog-bench",
            code: str = REPO) -> dict[str, float]:
    """``measure_one`` in a fresh subprocess, on a generated manifest of ``rows`` rows.

    ``code`` is the checkout whose ``pipelines`` the subprocess imports (an older commit's
    worktree gives the "before" figures).
    """
    manifest = os.path.join(work, f"manifest-{rows}.csv")
    if not os.path.exists(manifest):
        write_manifest(manifest, rows)
    cmd = [sys.executable, os.path.abspath(__file__), "--one", job, "--manifest", manifest, "--work-dir", work,
           "--output-root", output_root, "--json"]
    env = {**os.environ, "PYTHONPATH": code}
    proc = subprocess.run(cmd, cwd=code, capture_output=True, text=True, timeout=1800, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{job} launcher failed:\n{proc.stderr[-4000:]}")
    return {"rows": rows, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000,100000,1000000", help="manifest sizes (comma-separated)")
    parser.add_argument("--jobs", default="featurize,label", help="jobs to measure (comma-separated)")
    parser.add_argument("--one", choices=("featurize", "label"), help="measure one launch in this process")
    parser.add_argument("--manifest", help="with --one: the manifest to launch on")
    parser.add_argument("--work-dir", help="folder for manifests and the model (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per measurement")
    parser.add_argument("--output-root", default="gs://catalog-bench",
                        help="where the jobs would write (a dry run writes nothing there; the launchers of "
                             "commits before run folders wrote plan files, so give them a local folder)")
    parser.add_argument("--code", default=REPO,
                        help="checkout whose pipelines are measured (default: this one), e.g. a worktree of an "
                             "older commit for the 'before' figures")
    parser.add_argument("--results", default=os.path.join(REPO, "benchmarks", "launcher_results.md"),
                        help="append a results table here ('' for none)")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="launcher-bench-")
    if args.one:
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(measure_one(args.one, args.manifest, work, output_root=args.output_root)))
        return 0
    lines = ["| job | manifest rows | job graph | launcher peak memory | launcher time |", "|---|---|---|---|---|"]
    for job in args.jobs.split(","):
        for rows in (int(r) for r in args.rows.split(",")):
            m = measure(job, rows, work=work, output_root=args.output_root, code=args.code)
            print(json.dumps({"job": job, **m}) if args.json else
                  f"{job:10s} {rows:>10,d} rows: graph {m['graph_bytes'] / 1024:8.1f} KB, "
                  f"peak {m['peak_rss_mb']:7.0f} MB, {m['seconds']:6.1f} s", flush=True)
            lines.append(f"| {job} | {rows:,} | {m['graph_bytes'] / 1024:.1f} KB | {m['peak_rss_mb']:.0f} MB | "
                         f"{m['seconds']:.1f} s |")
    if args.results:
        with open(args.results, "a") as f:
            code = "" if args.code == REPO else f" --code {args.code} --output-root {args.output_root}"
            f.write(f"\n## {time.strftime('%Y-%m-%d %H:%M')} `benchmarks/launcher_bench.py --rows {args.rows}{code}`\n\n")
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
