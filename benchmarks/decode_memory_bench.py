"""Peak memory of one worker featurizing one file: the bounded decode vs the whole-file decode.

Run by hand (not a test); results go to ``benchmarks/decode_memory_results.md``::

    .venv/bin/python benchmarks/decode_memory_bench.py

Two generated files (issue 12, item 1):

* ``bomb.flac``: ``--bomb-seconds`` (180) of 8-channel 192 kHz digital silence, ~285 KB of FLAC
  that decodes to 1.1 GB of float32;
* ``clip.wav``: a normal ``--clip-seconds`` (30) 44.1 kHz stereo 16-bit clip of tones and noise.

Each is featurized (read bytes, decode, mono, 22,050 Hz, 3 s segments, 128-band log-mel) in a
fresh subprocess per file and per path, under ``--max-audio-seconds`` (1800, the default of the
jobs), and the subprocess reports its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
before and after the work:

* ``whole-file`` is the decode of main before issue 12: ``decode_audio`` (every channel at the
  native rate) -> ``to_mono`` -> ``resample`` -> ``segment_audio`` -> one ``log_mel`` over all
  segments;
* ``bounded`` is :func:`transforms.beam_audio.featurize_track`, which both jobs run (the label job
  through ``AudioToLogMel``): header check, 1 MiB blocks, streaming mix-down and resampling,
  16 segments of log-mel at a time.

The ``added`` column is the growth of the peak over the process's peak just before the work (the
imports and the encoded file); it is what one more file in flight costs a worker thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATHS = ("whole-file", "bounded")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def write_files(work: Path, *, bomb_seconds: float, clip_seconds: float) -> dict[str, Path]:
    """Write the bomb (block by block: never held decoded) and the normal clip."""
    import soundfile as sf

    bomb = work / "bomb.flac"
    with sf.SoundFile(bomb, "w", samplerate=192000, channels=8, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((192000, 8), np.float32)
        for start in range(0, int(bomb_seconds * 192000), 192000):
            f.write(block[: int(bomb_seconds * 192000) - start])
    clip = work / "clip.wav"
    sr = 44100
    t = np.arange(int(clip_seconds * sr)) / sr
    rng = np.random.default_rng(0)
    y = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)], axis=1)
    y += 0.02 * rng.standard_normal(y.shape)
    sf.write(clip, y.astype(np.float32), sr, subtype="PCM_16")
    return {"bomb": bomb, "clip": clip}


def child(path: str, mode: str, max_seconds: float) -> None:
    """Featurize one file one way and print a JSON line with the peak RSS before and after."""
    from transforms.audio import decode_audio, resample, segment_audio, to_mono
    from transforms.beam_audio import ReadLimits, featurize_track
    from transforms.sources import TrackRef
    from transforms.spec import SpectrogramParams
    from transforms.spectrogram import log_mel, mel_filter

    params = SpectrogramParams()
    mel = mel_filter(params)
    data = Path(path).read_bytes()
    before = _maxrss_bytes()
    t0 = time.perf_counter()
    if mode == "whole-file":
        samples, sr = decode_audio(data, name=path, max_seconds=max_seconds)
        y = resample(to_mono(samples), orig_sr=sr, target_sr=params.sample_rate)
        del samples
        mels = log_mel(segment_audio(y, params=params), mel=mel)
    else:
        ref = TrackRef(uri=path, track_id=os.path.basename(path), label="")
        mels = featurize_track(ref, params=params, mel=mel, limits=ReadLimits(max_seconds=max_seconds)).mels
    seconds = time.perf_counter() - t0
    print(json.dumps({"before": before, "peak": _maxrss_bytes(), "seconds": seconds,
                      "segments": int(mels.shape[0]), "file_bytes": len(data)}))


def measure(path: Path, mode: str, max_seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), mode, "--max-audio-seconds", str(max_seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bomb-seconds", type=float, default=180.0, help="length of the 8 ch 192 kHz silence")
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="length of the normal clip")
    parser.add_argument("--max-audio-seconds", type=float, default=1800.0, help="the jobs' --max-audio-seconds")
    parser.add_argument("--repeats", type=int, default=2, help="subprocesses per file and path (the median is kept)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "decode_memory_results.md"),
                        help="markdown file to write ('' = print only)")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.max_audio_seconds)
        return 0

    from transforms.audio import decode_memory_bound

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), bomb_seconds=args.bomb_seconds, clip_seconds=args.clip_seconds)
        for name, path in files.items():
            for _ in range(args.repeats):  # interleaved: whole-file and bounded side by side
                for mode in PATHS:
                    rows.append({"file": name, "path": mode, **measure(path, mode, args.max_audio_seconds)})
    mib = 2**20
    table = ["| file | encoded | path | peak RSS before | peak RSS after | added | added vs bounded | time |",
             "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for name in files:
        for mode in PATHS:
            runs = sorted((r for r in rows if r["file"] == name and r["path"] == mode), key=lambda r: r["peak"] - r["before"])
            summary[name, mode] = runs[len(runs) // 2]
        for mode in PATHS:
            r = summary[name, mode]
            added = r["peak"] - r["before"]
            ratio = added / max(1, summary[name, "bounded"]["peak"] - summary[name, "bounded"]["before"])
            table.append(
                f"| {name} | {r['file_bytes'] / 1024:.0f} KB | {mode} | {r['before'] / mib:.0f} MiB | "
                f"{r['peak'] / mib:.0f} MiB | {added / mib:.1f} MiB | {ratio:.1f}x | {r['seconds']:.2f} s |"
            )
    bound = {name: decode_memory_bound(max_seconds=min(args.max_audio_seconds, s), target_sr=22050) / mib
             for name, s in (("bomb", args.bomb_seconds), ("clip", args.clip_seconds))}
    command = "python benchmarks/decode_memory_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# Peak memory per worker: bounded decode vs whole-file decode",
        "",
        f"Command: `{command.strip()}` ({platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.repeats} subprocesses per row, median of the added peak).",
        "",
        f"`bomb`: {args.bomb_seconds:g} s of 8-channel 192 kHz silence (FLAC); `clip`: {args.clip_seconds:g} s "
        f"of 44.1 kHz stereo 16-bit wav. Both featurized to 3 s 128-band log-mels at 22,050 Hz under "
        f"--max-audio-seconds {args.max_audio_seconds:g}. See the script's docstring for the two paths.",
        "",
        *table,
        "",
        f"`decode_memory_bound` (the arrays `load_mono` may allocate: mono output + 4 blocks of 1 MiB): "
        f"bomb {bound['bomb']:.1f} MiB, clip {bound['clip']:.1f} MiB. The bounded path adds the log-mel "
        "output (0.66 MB per 30 s) and the spectra of 16 segments at a time on top.",
        "",
    ])
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
