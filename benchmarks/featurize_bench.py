"""Featurize benchmark: per-stage cost, whole-job throughput against a plain librosa loop, memory.

Run by hand (not a test); results go to ``benchmarks/featurize_results.md``::

    .venv/bin/python benchmarks/featurize_bench.py --clips 200 --memory-clips 500,2000

What it measures, on generated 30 s clips of three kinds (44.1 kHz stereo wav, 44.1 kHz stereo
mp3, 22.05 kHz mono wav), all written once and hard-linked to many names:

1. **Stages**, in process, per clip: read, decode, mono, resample, segment, log-mel, encode
   (tf.train.Example + GZIP as the TFRecord shard writer does; Parquet zstd for comparison), with
   ``librosa.load(sr=22050)`` + ``melspectrogram`` timed on the same clips.
2. **Throughput**, each job in its own subprocess, run side by side (interleaved, repeated):
   the plain loop (``librosa.load(sr=22050)`` + ``librosa.feature.melspectrogram`` + ``np.save``,
   one process) and ``python -m pipelines.featurize`` with 1 and 2 workers.  Each is run at
   ``--clips`` and at ``--startup-clips`` clips; the difference removes the fixed start-up cost
   (imports, Beam workers), giving the *marginal* rate, next to the plain end-to-end wall time.
3. **Memory**: featurize (``--workers`` of the last throughput setting) at each of
   ``--memory-clips``; peak of the summed RSS of the job's process tree (sampled every 0.1 s from
   /proc) and the largest single process (``wait4`` rusage, which includes reaped children).

Speed numbers depend on the machine and on what else runs on it; quote ratios measured in one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transforms.audio import decode_audio, resample, segment_audio, to_mono  # noqa: E402
from transforms.records import encode_example, make_rows, rows_to_table  # noqa: E402
from transforms.spec import SpectrogramParams  # noqa: E402
from transforms.spectrogram import log_mel, mel_filter  # noqa: E402

#: Generated clip kinds: (name, file extension, sample rate, channels, format, subtype).
KINDS = (
    ("wav44s", "wav", 44100, 2, "WAV", "PCM_16"),
    ("mp3", "mp3", 44100, 2, "MP3", "MPEG_LAYER_III"),
    ("wav22m", "wav", 22050, 1, "WAV", "PCM_16"),
)
LABELS = ("blues", "classical", "jazz", "rock")

BASELINE_CODE = """
import sys, time, numpy as np, librosa
paths = open(sys.argv[1]).read().split()
out = sys.argv[2]
for i, p in enumerate(paths):
    y, sr = librosa.load(p, sr=22050)
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
    np.save(f"{out}/{i:06d}.npy", S)
"""


# Generated audio -------------------------------------------------------------------------------
def synth_music(*, seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """Music-like test audio: harmonic notes changing every 0.25-0.5 s, noise hits, a stereo pan.

    Returns
    -------
    np.ndarray, float32, shape (n_samples, channels), peak about 0.8
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    note_len = int(sr * rng.choice([0.25, 0.5]))
    n_notes = -(-n // note_len)
    f0 = 110.0 * 2.0 ** (rng.integers(0, 36, n_notes) / 12.0)
    freq = np.repeat(f0, note_len)[:n]
    phase = 2 * np.pi * np.cumsum(freq) / sr
    env = np.tile(np.exp(-3.0 * np.arange(note_len) / note_len), n_notes)[:n]
    tone = sum(np.sin(k * phase) / k for k in range(1, 7)) * env
    hits = np.zeros(n)
    hits[:: note_len // 2] = 1.0
    noise = np.convolve(hits, np.exp(-np.arange(int(0.05 * sr)) / (0.01 * sr)), mode="same")
    noise *= rng.standard_normal(n)
    mono = 0.5 * tone / np.abs(tone).max() + 0.3 * noise / (np.abs(noise).max() + 1e-9)
    if channels == 1:
        out = mono[:, None]
    else:
        pan = 0.5 + 0.4 * np.sin(2 * np.pi * 0.1 * t)
        out = np.stack([mono * pan, mono * (1 - pan) + 0.05 * rng.standard_normal(n)], axis=1)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def make_base_clips(folder: Path, *, per_kind: int, seconds: float) -> dict[str, list[Path]]:
    """Write ``per_kind`` distinct clips of every kind; returns ``{kind: [paths]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    clips: dict[str, list[Path]] = {}
    for k, (kind, ext, sr, channels, fmt, subtype) in enumerate(KINDS):
        clips[kind] = []
        for i in range(per_kind):
            path = folder / f"{kind}-{seconds:g}s-{i}.{ext}"
            if not path.exists():
                y = synth_music(seconds=seconds, sr=sr, channels=channels, seed=100 * k + i)
                sf.write(path, y, sr, format=fmt, subtype=subtype)
            clips[kind].append(path)
    return clips


def make_corpus(root: Path, base: dict[str, list[Path]], n: int) -> list[Path]:
    """``n`` files in the GTZAN layout ``root/<label>/<kind>-<i>.<ext>``, hard links to the base
    clips (copies where links are impossible), kinds in equal thirds."""
    if root.exists():
        shutil.rmtree(root)
    kinds = list(base)
    paths = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        source = base[kind][(i // len(kinds)) % len(base[kind])]
        dest = root / LABELS[i % len(LABELS)] / f"{kind}-{i:06d}{source.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        paths.append(dest)
    return paths


# 1. Stages -------------------------------------------------------------------------------------
def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls after one untimed warm-up call; the last result."""
    times, result = [], fn()
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def time_stages(base: dict[str, list[Path]], *, params: SpectrogramParams, repeats: int) -> dict:
    """Per kind: median seconds per clip of every stage, averaged over that kind's base clips."""
    import gzip

    import librosa
    import pyarrow.parquet as pq

    from transforms.shards import GZIP_LEVEL

    mel = mel_filter(params)
    librosa.feature.melspectrogram(y=np.zeros(params.segment_samples, np.float32))  # numba warm-up
    results = {}
    for kind, paths in base.items():
        per_stage: dict[str, list[float]] = {}
        for path in paths:
            t = {}
            t["read"], data = _median_time(lambda: path.read_bytes(), repeats)
            t["decode"], (samples, sr) = _median_time(
                lambda: decode_audio(data, name=path.name), repeats
            )
            t["mono"], y = _median_time(lambda: to_mono(samples), repeats)
            t["resample"], y = _median_time(
                lambda: resample(y, orig_sr=sr, target_sr=params.sample_rate), repeats
            )
            t["segment"], segs = _median_time(lambda: segment_audio(y, params=params), repeats)
            t["log-mel"], mels = _median_time(lambda: log_mel(segs, mel=mel), repeats)
            rows = make_rows(mels, params=params, track_id="t", uri=str(path), label="rock",
                             label_index=3, split="train")
            t["encode tf.train.Example"], blob = _median_time(
                lambda: b"".join(encode_example(r) for r in rows), repeats
            )
            t[f"gzip (level {GZIP_LEVEL}, as the shard writer)"], _ = _median_time(
                lambda: gzip.compress(blob, GZIP_LEVEL), repeats
            )
            t["gzip level 0 (stored; not in total)"], _ = _median_time(
                lambda: gzip.compress(blob, 0), repeats
            )

            def _parquet() -> bytes:
                buf = io.BytesIO()
                pq.write_table(rows_to_table(rows, params=params), buf, compression="zstd")
                return buf.getvalue()

            t["encode parquet zstd"], _ = _median_time(_parquet, repeats)

            def _librosa() -> object:
                yy, _ = librosa.load(path, sr=params.sample_rate)
                return librosa.feature.melspectrogram(y=yy, sr=params.sample_rate)

            t["librosa load+melspectrogram"], _ = _median_time(_librosa, repeats)
            for stage, value in t.items():
                per_stage.setdefault(stage, []).append(value)
        results[kind] = {stage: float(np.mean(v)) for stage, v in per_stage.items()}
    return results


# 2./3. Jobs in subprocesses --------------------------------------------------------------------
def _tree_rss_kb(root_pid: int) -> int:
    """Summed VmRSS (kB) of ``root_pid`` and all its descendants, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def run_measured(cmd: Sequence[str], *, log: Path) -> dict:
    """Run ``cmd``; wall seconds, peak summed tree RSS and largest-process max RSS (MiB)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    peak = [0]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        done = threading.Event()

        def _sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                done.wait(0.1)

        sampler = threading.Thread(target=_sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,  # the job and all its reaped worker processes
        "tree_rss_mib": peak[0] / 1024,
        "max_rss_mib": usage.ru_maxrss / 1024,
    }


def featurize_cmd(corpus: Path, out: Path, *, workers: int, fmt: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.featurize",
        "--input", f"{corpus}/*/*.wav", "--input", f"{corpus}/*/*.mp3",
        "--output", str(out), "--format", fmt,
        "--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers),
    ]


def baseline_cmd(paths: Sequence[Path], out: Path, list_file: Path) -> list[str]:
    list_file.write_text("\n".join(map(str, paths)))
    return [sys.executable, "-c", BASELINE_CODE, str(list_file), str(out)]


def run_job(name: str, *, corpus: Path, paths: list[Path], work: Path, fmt: str) -> dict:
    """Run one job (``baseline`` or ``featurize-N``) over ``paths`` (the whole ``corpus``)."""
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = work / f"{name}-{len(paths)}.log"
    if name == "baseline":
        result = run_measured(baseline_cmd(paths, out, work / "baseline-list.txt"), log=log)
        produced = len(list(out.glob("*.npy")))
    else:
        workers = int(name.split("-")[1])
        result = run_measured(featurize_cmd(corpus, out, workers=workers, fmt=fmt), log=log)
        metadata = json.loads((out / "metadata.json").read_text())
        produced = metadata["inputs"]["featurized"]
        result["audio_seconds"] = sum(c["seconds"] for c in metadata["counts"].values())
    if produced != len(paths):
        raise RuntimeError(f"{name}: {produced} outputs for {len(paths)} clips; see {log}")
    shutil.rmtree(out, ignore_errors=True)
    return result


def throughput(base: dict[str, list[Path]], *, work: Path, clips: int, startup_clips: int,
               jobs: Sequence[str], repeats: int, fmt: str, seconds: float) -> dict:
    """Wall times at ``clips`` and ``startup_clips`` for every job, interleaved; medians."""
    corpora = {}
    for n in (startup_clips, clips):
        root = work / f"corpus-{n}"
        corpora[n] = (root, make_corpus(root, base, n))
    walls: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    for r in range(repeats):
        for n in (startup_clips, clips):
            for job in jobs:
                root, paths = corpora[n]
                res = run_job(job, corpus=root, paths=paths, work=work, fmt=fmt)
                if abs(res.get("audio_seconds", n * seconds) - n * seconds) > 0.01 * n * seconds:
                    raise RuntimeError(f"{job} featurized {res['audio_seconds']:.0f} s of audio, "
                                       f"expected {n * seconds:.0f} s")
                walls.setdefault((job, n), []).append(res["wall"])
                cpus.setdefault((job, n), []).append(res["cpu"])
                print(f"  repeat {r + 1}: {job:<12} {n:>5} clips {res['wall']:7.2f} s wall "
                      f"{res['cpu']:7.2f} s cpu", flush=True)
    for root, _ in corpora.values():
        shutil.rmtree(root, ignore_errors=True)
    table = {}
    for job in jobs:
        small = statistics.median(walls[(job, startup_clips)])
        big = statistics.median(walls[(job, clips)])
        marginal = (big - small) / (clips - startup_clips)
        cpu_marginal = (statistics.median(cpus[(job, clips)])
                        - statistics.median(cpus[(job, startup_clips)])) / (clips - startup_clips)
        table[job] = {
            "cpu": statistics.median(cpus[(job, clips)]),
            "cpu_marginal_s_per_clip": cpu_marginal,
            "x_realtime_per_cpu_second": seconds / cpu_marginal if cpu_marginal > 0 else float("inf"),
            "wall_small": small,
            "wall": big,
            "walls": walls[(job, clips)],
            "startup": small - marginal * startup_clips,
            "marginal_s_per_clip": marginal,
            "x_realtime_end_to_end": clips * seconds / big,
            "x_realtime_marginal": seconds / marginal if marginal > 0 else float("inf"),
        }
    return table


def memory(base: dict[str, list[Path]], *, work: Path, sizes: Sequence[int], workers: int,
           fmt: str) -> dict:
    table = {}
    for n in sizes:
        root = work / f"corpus-{n}"
        paths = make_corpus(root, base, n)
        res = run_job(f"featurize-{workers}", corpus=root, paths=paths, work=work, fmt=fmt)
        shutil.rmtree(root, ignore_errors=True)
        table[n] = res
        print(f"  memory: {n} clips: tree peak {res['tree_rss_mib']:.0f} MiB, largest process "
              f"{res['max_rss_mib']:.0f} MiB, {res['wall']:.1f} s", flush=True)
    return table


# Report ----------------------------------------------------------------------------------------
def machine_line() -> str:
    import apache_beam
    import librosa

    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, Beam {apache_beam.__version__}, librosa "
            f"{librosa.__version__}, numpy {np.__version__}; load average at start "
            f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")


def report(args: argparse.Namespace, *, command: str, machine: str, stages: dict | None,
           tput: dict | None, mem: dict | None, seconds: float) -> str:
    lines = [
        "# featurize benchmark results",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}; load average at end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}.",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Clips: generated {seconds:g} s "
        "music-like audio, thirds of 44.1 kHz stereo wav, 44.1 kHz stereo mp3 (libsndfile/LAME) and "
        "22.05 kHz mono wav; default spectrogram parameters (22,050 Hz, n_fft 2048, hop 512, 128 mels, "
        "3 s segments).",
        "",
    ]
    if stages:
        names = list(next(iter(stages.values())))
        lines += ["## Per-clip time of each stage (ms, median of repeats, in process)", "",
                  "| stage | " + " | ".join(stages) + " |",
                  "|---|" + "---:|" * len(stages)]
        for stage in names:
            cells = " | ".join(f"{stages[k][stage] * 1e3:.1f}" for k in stages)
            lines.append(f"| {stage} | {cells} |")
        pipeline = [s for s in names if not s.startswith(("encode parquet", "librosa", "gzip level 0"))]
        totals = {k: sum(v[s] for s in pipeline) for k, v in stages.items()}
        lines.append("| **total (read .. gzip)** | "
                     + " | ".join(f"**{totals[k] * 1e3:.1f}**" for k in stages) + " |")
        lines.append("| x real time, one core | "
                     + " | ".join(f"{seconds / totals[k]:.0f}x" for k in stages) + " |")
        lines.append("")
    if tput:
        lines += [
            f"## Whole-job throughput ({args.clips} clips = {args.clips * seconds / 3600:.2f} h of "
            f"audio; median of {args.repeats} interleaved repeats)",
            "",
            "Each job runs in its own process. *Marginal* removes fixed start-up cost (imports, Beam "
            f"worker start): (wall at {args.clips} clips - wall at {args.startup_clips}) / "
            f"{args.clips - args.startup_clips} clips.",
            "",
            "| job | wall, s | start-up, s | marginal ms/clip | x real time end to end | "
            "x real time marginal | per worker | marginal speed-up vs plain loop |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = tput.get("baseline")
        for job, r in tput.items():
            n_workers = int(job.split("-")[1]) if job.startswith("featurize-") else 1
            speedup = (base["marginal_s_per_clip"] / r["marginal_s_per_clip"]) if base else float("nan")
            lines.append(
                f"| {job} | {r['wall']:.1f} | {r['startup']:.1f} | {r['marginal_s_per_clip'] * 1e3:.1f} | "
                f"{r['x_realtime_end_to_end']:.0f}x | {r['x_realtime_marginal']:.0f}x | "
                f"{r['x_realtime_marginal'] / n_workers:.0f}x | {speedup:.2f}x |"
            )
        lines += [
            "",
            "CPU time (user + system of the job and its worker processes, from `wait4`), which "
            "other load on the machine disturbs far less than wall time:",
            "",
            "| job | CPU s at full size | marginal CPU ms/clip | audio seconds per CPU second | "
            "CPU speed-up vs plain loop |",
            "|---|---:|---:|---:|---:|",
        ]
        for job, r in tput.items():
            cpu_speedup = (base["cpu_marginal_s_per_clip"] / r["cpu_marginal_s_per_clip"]
                           if base else float("nan"))
            lines.append(f"| {job} | {r['cpu']:.1f} | {r['cpu_marginal_s_per_clip'] * 1e3:.1f} | "
                         f"{r['x_realtime_per_cpu_second']:.0f}x | {cpu_speedup:.2f}x |")
        lines.append("")
        lines.append("All walls at full size: " + "; ".join(
            f"{job} " + ", ".join(f"{w:.1f}" for w in r["walls"]) for job, r in tput.items()) + " s.")
        lines.append("")
    if mem:
        sizes = sorted(mem)
        lines += [f"## Peak memory, featurize with {args.memory_workers} workers", "",
                  "| clips | summed RSS of the process tree, MiB | largest process max RSS, MiB | "
                  "wall, s | CPU, s |",
                  "|---:|---:|---:|---:|---:|"]
        for n in sizes:
            m = mem[n]
            lines.append(f"| {n} | {m['tree_rss_mib']:.0f} | {m['max_rss_mib']:.0f} | "
                         f"{m['wall']:.1f} | {m['cpu']:.1f} |")
        if len(sizes) >= 2:
            a, b = mem[sizes[0]], mem[sizes[-1]]
            lines.append("")
            lines.append(f"Growth from {sizes[0]} to {sizes[-1]} clips: summed tree RSS "
                         f"{(b['tree_rss_mib'] / a['tree_rss_mib'] - 1) * 100:+.1f}%, largest process "
                         f"{(b['max_rss_mib'] / a['max_rss_mib'] - 1) * 100:+.1f}%.")
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=200, help="clips for the throughput runs (default 200)")
    p.add_argument("--startup-clips", type=int, default=12,
                   help="clips of the small runs whose wall time is subtracted (default 12)")
    p.add_argument("--workers", default="1,2", help="featurize worker counts to compare (default 1,2)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats of every job (default 1)")
    p.add_argument("--memory-clips", default="500,2000",
                   help="comma-separated clip counts for the memory runs; '' skips them (default 500,2000)")
    p.add_argument("--memory-workers", type=int, default=2, help="featurize workers in the memory runs")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each generated clip (default 30)")
    p.add_argument("--base-clips", type=int, default=3,
                   help="distinct generated clips per kind, linked to many names (default 3)")
    p.add_argument("--stage-repeats", type=int, default=5, help="repeats of each stage timing (default 5)")
    p.add_argument("--format", choices=("tfrecord", "parquet"), default="tfrecord",
                   help="featurize output format (default tfrecord)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: stages, throughput, memory")
    p.add_argument("--work-dir", default="", help="scratch folder (default: a new temporary folder, removed)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "featurize_results.md"),
                   help="markdown file the results are written to ('' prints only)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    given = list(argv if argv is not None else sys.argv[1:])
    command = shlex.join([".venv/bin/python", "benchmarks/featurize_bench.py", *given])
    machine = machine_line()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="featurize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating clips in {work}", flush=True)
        base = make_base_clips(work / "base", per_kind=args.base_clips, seconds=args.seconds)
        params = SpectrogramParams()
        stages = tput = mem = None
        if "stages" not in skip:
            print("timing stages", flush=True)
            stages = time_stages(base, params=params, repeats=args.stage_repeats)
        if "throughput" not in skip:
            jobs = ["baseline"] + [f"featurize-{int(w)}" for w in args.workers.split(",") if w]
            print(f"throughput: {jobs}", flush=True)
            tput = throughput(base, work=work, clips=args.clips, startup_clips=args.startup_clips,
                              jobs=jobs, repeats=args.repeats, fmt=args.format, seconds=args.seconds)
        sizes = [int(n) for n in args.memory_clips.split(",") if n]
        if "memory" not in skip and sizes:
            mem = memory(base, work=work, sizes=sizes, workers=args.memory_workers, fmt=args.format)
        text = report(args, command=command, machine=machine, stages=stages, tput=tput, mem=mem,
                      seconds=args.seconds)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.results:
        Path(args.results).write_text(text + "\n")
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
