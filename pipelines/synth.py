"""``genreflow synth``: generate a labeled collection of synthetic music, in the GTZAN layout.

::

    genreflow synth --output DIR [--styles rock,jazz,...] [--clips-per-style N] [--seconds S]
                    [--sample-rate R] [--formats wav,flac,ogg,mp3] [--seed K] [--corrupt N]
                    [--workers W]

writes

* ``DIR/<style>/<style>.NNNNN.<ext>``: one clip per file, rendered by
  :func:`pipelines.synth_styles.render_clip`; formats cycle over ``--formats`` by clip index, so
  every style gets every format in the same proportion;
* ``DIR/manifest.csv``: ``uri,label,track_id,split,group`` for the good clips (``uri`` relative to
  ``DIR``; ``track_id`` is ``<style>/<file>``, what featurize derives from the folder layout;
  ``split`` and ``group`` empty, so featurize assigns splits);
* with ``--corrupt N``: N deliberately broken files ``DIR/<style>/<style>.corrupt-NNNNN.<ext>``
  (kinds cycle: truncated, random bytes, empty, NaN samples), listed in ``DIR/corrupt.csv``
  (``uri,kind,label``) and *not* in ``manifest.csv``; a glob over ``DIR`` picks them up with the
  good clips, and featurize must dead-letter them;
* ``DIR/synth.json`` last: parameters, counts and timings.

Generation runs on a process pool (:mod:`concurrent.futures`, ``--workers``, default all cores).
Each clip's random stream comes from ``np.random.SeedSequence([seed, crc32(style), index])``, so
the same seed gives the same bytes whatever the number of workers or the other styles chosen.
Only local output folders are supported (files are written with libsndfile).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import io
import logging
import multiprocessing
import os
import struct
import sys
import time
import zlib
from typing import Sequence

import numpy as np
import soundfile as sf

from genreflow.args import report_error
from pipelines.synth_styles import STYLE_NAMES, STYLES, render_clip
from transforms.metadata import utc_now
from transforms.storage import write_json_atomic

__all__ = [
    "FORMATS",
    "CORRUPT_KINDS",
    "Track",
    "CorruptFile",
    "SynthResult",
    "SynthOptions",
    "clip_seed",
    "clip_path",
    "encode_audio",
    "corrupt_bytes",
    "write_collection",
    "run",
    "main",
]

logger = logging.getLogger(__name__)

#: Output formats: extension -> (libsndfile format, subtype).
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}

#: Kinds of broken files ``--corrupt`` writes, in the order they cycle.
CORRUPT_KINDS = ("truncated", "random_bytes", "empty", "non_finite")

MANIFEST_FILE = "manifest.csv"
CORRUPT_FILE = "corrupt.csv"
SUMMARY_FILE = "synth.json"
MANIFEST_COLUMNS = ("uri", "label", "track_id", "split", "group")


@dataclasses.dataclass(frozen=True)
class Track:
    """One generated clip: ``uri`` is relative to the collection folder, ``path`` absolute."""

    uri: str
    path: str
    label: str
    track_id: str
    format: str
    index: int


@dataclasses.dataclass(frozen=True)
class CorruptFile:
    """One deliberately broken file; ``label`` is the style folder it sits in."""

    uri: str
    path: str
    kind: str
    label: str


@dataclasses.dataclass(frozen=True)
class SynthResult:
    """What :func:`write_collection` wrote.

    Attributes
    ----------
    output_dir : str
        Absolute collection folder.
    manifest : str
        Path of ``manifest.csv`` (good clips only).
    corrupt_manifest : str or None
        Path of ``corrupt.csv`` when broken files were written.
    summary : str
        Path of ``synth.json``.
    tracks : tuple of Track
        Good clips, style by style in index order.
    corrupt : tuple of CorruptFile
        Broken files.
    seconds : float
        Wall-clock time of the whole generation.
    """

    output_dir: str
    manifest: str
    corrupt_manifest: str | None
    summary: str
    tracks: tuple[Track, ...]
    corrupt: tuple[CorruptFile, ...]
    seconds: float

    @property
    def labels(self) -> dict[str, str]:
        """``{track_id: style}`` of the good clips."""
        return {t.track_id: t.label for t in self.tracks}


def clip_seed(seed: int, style: str, index: int) -> np.random.SeedSequence:
    """Seed of clip ``index`` of ``style``: independent of other styles, clip counts and workers."""
    return np.random.SeedSequence([int(seed), zlib.crc32(style.encode("utf-8")), int(index)])


def clip_path(style: str, index: int, fmt: str) -> str:
    """Relative path of a clip in the GTZAN layout: ``<style>/<style>.NNNNN.<fmt>``."""
    return f"{style}/{style}.{index:05d}.{fmt}"


# Ogg ------------------------------------------------------------------------------------------
def _ogg_crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table[i] = r & 0xFFFFFFFF
    return table


_OGG_CRC = [int(v) for v in _ogg_crc_table()]


def _ogg_crc(page: bytes) -> int:
    crc = 0
    table = _OGG_CRC
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _set_ogg_serial(data: bytes, serial: int) -> bytes:
    """Rewrite the stream serial number of every Ogg page (and its CRC).

    libsndfile picks the serial from the clock, so two encodings of the same audio differ in these
    4 bytes per page; a fixed serial makes the file a function of the audio alone.
    """
    out = bytearray(data)
    pos = 0
    while pos + 27 <= len(out) and out[pos : pos + 4] == b"OggS":
        n_segments = out[pos + 26]
        size = 27 + n_segments + sum(out[pos + 27 : pos + 27 + n_segments])
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = b"\0\0\0\0"
        out[pos + 22 : pos + 26] = _ogg_crc(bytes(out[pos : pos + size])).to_bytes(4, "little")
        pos += size
    return bytes(out)


def encode_audio(y: np.ndarray, *, sample_rate: int, fmt: str, serial: int = 0) -> bytes:
    """Encode mono float samples as ``fmt`` (a key of :data:`FORMATS`).

    Parameters
    ----------
    y : np.ndarray, float32, shape (n_samples,)
        Samples in [-1, 1].
    sample_rate : int
        Sampling rate in Hz.
    fmt : str
        ``wav`` (16-bit PCM), ``flac`` (16-bit), ``ogg`` (Vorbis) or ``mp3``.
    serial : int
        Ogg stream serial number (ogg only), making the bytes deterministic.

    Returns
    -------
    bytes
        The whole file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(FORMATS)}")
    container, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y, dtype=np.float32), int(sample_rate), format=container, subtype=subtype)
    data = buf.getvalue()
    return _set_ogg_serial(data, serial & 0xFFFFFFFF) if fmt == "ogg" else data


def corrupt_bytes(kind: str, *, fmt: str, sample_rate: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """A deliberately broken audio file.

    Parameters
    ----------
    kind : str
        ``truncated`` (the first half of a real encoding: the header promises more than the file
        holds), ``random_bytes`` (no valid header; no 0xFF byte, so no MPEG frame sync can be
        found), ``empty`` (zero bytes) or ``non_finite`` (a float WAV with NaN and inf samples;
        always ``.wav``).
    fmt : str
        Extension for ``truncated``, ``random_bytes`` and ``empty``.
    sample_rate : int
        Sampling rate in Hz of the audio inside.
    rng : np.random.Generator
        Source of the content.

    Returns
    -------
    (str, bytes)
        The extension to use and the file content.
    """
    if kind == "truncated":
        y = render_clip(STYLE_NAMES[int(rng.integers(len(STYLE_NAMES)))], seconds=2.0, sample_rate=sample_rate,
                        seed=rng)
        data = encode_audio(y, sample_rate=sample_rate, fmt=fmt, serial=int(rng.integers(2**32)))
        return fmt, data[: len(data) // 2]
    if kind == "random_bytes":
        data = rng.integers(0, 255, size=int(rng.integers(2000, 20000)), dtype=np.uint8)  # 0..254: no 0xFF
        return fmt, data.tobytes()
    if kind == "empty":
        return fmt, b""
    if kind == "non_finite":
        y = 0.1 * rng.standard_normal(sample_rate).astype(np.float32)
        y[rng.integers(0, len(y), 50)] = np.nan
        y[rng.integers(0, len(y), 5)] = np.inf
        return "wav", _float_wav(y, sample_rate=sample_rate)
    raise ValueError(f"unknown corrupt kind {kind!r}; choose from {CORRUPT_KINDS}")


def _float_wav(y: np.ndarray, *, sample_rate: int) -> bytes:
    """A minimal mono 32-bit float WAV (libsndfile would add a PEAK chunk with a timestamp)."""
    data = np.asarray(y, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, int(sample_rate), 4 * int(sample_rate), 4, 32)  # IEEE float, mono
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# Workers ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Job:
    output_dir: str
    style: str
    index: int
    fmt: str
    seconds: float
    sample_rate: int
    seed: int


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _render_job(job: _Job) -> int:
    """Render, encode and write one clip; returns the file size in bytes."""
    ss = clip_seed(job.seed, job.style, job.index)
    y = render_clip(job.style, seconds=job.seconds, sample_rate=job.sample_rate, seed=ss)
    data = encode_audio(y, sample_rate=job.sample_rate, fmt=job.fmt, serial=int(ss.generate_state(1)[0]))
    _write_atomic(os.path.join(job.output_dir, clip_path(job.style, job.index, job.fmt)), data)
    return len(data)


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` (workers start at once) unless a threaded runtime is loaded, then ``forkserver``.

    Forking a process that runs TensorFlow or gRPC threads can deadlock the child; the fork server
    is a clean single-threaded process that imports this module once and forks the workers.
    """
    if not any(m in sys.modules for m in ("tensorflow", "apache_beam", "grpc", "torch")):
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__ if __name__ != "__main__" else "pipelines.synth"])
    return ctx


def _parse_list(text: str | Sequence[str], *, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s).strip() for s in text]
    items = [s for s in items if s]
    unknown = [s for s in items if s not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    if not items:
        raise ValueError(f"no {what} given")
    if len(set(items)) != len(items):
        raise ValueError(f"{what} repeat: {items}")
    return tuple(items)


@dataclasses.dataclass(frozen=True)
class SynthOptions:
    """The options of one collection (see :func:`write_collection`), checked; ``synth.json`` records them."""

    styles: tuple[str, ...]
    clips_per_style: int
    seconds: float
    sample_rate: int
    formats: tuple[str, ...]
    seed: int
    corrupt: int
    workers: int

    @classmethod
    def checked(cls, *, styles: str | Sequence[str], clips_per_style: int, seconds: float, sample_rate: int,
                formats: str | Sequence[str], seed: int, corrupt: int, workers: int | None) -> "SynthOptions":
        """Check and normalise the options (``workers`` ``None`` -> the number of cores).

        Raises
        ------
        ValueError
            For an unknown, missing or repeated style or format, a negative count or a non-positive
            length or rate.
        """
        styles = _parse_list(styles, allowed=tuple(STYLES), what="styles")
        formats = _parse_list(formats, allowed=tuple(FORMATS), what="formats")
        if clips_per_style < 0 or corrupt < 0:
            raise ValueError("clips_per_style and corrupt must be >= 0")
        if not seconds > 0 or sample_rate <= 0:
            raise ValueError(f"seconds and sample_rate must be positive, got {seconds} and {sample_rate}")
        return cls(styles=styles, clips_per_style=clips_per_style, seconds=seconds, sample_rate=sample_rate,
                   formats=formats, seed=seed, corrupt=corrupt, workers=max(1, int(workers or os.cpu_count() or 1)))


def write_collection(
    output_dir: str,
    *,
    styles: Sequence[str] = STYLE_NAMES,
    clips_per_style: int = 40,
    seconds: float = 10.0,
    sample_rate: int = 22050,
    formats: Sequence[str] = ("wav",),
    seed: int = 0,
    corrupt: int = 0,
    workers: int | None = None,
) -> SynthResult:
    """Generate a labeled collection of synthetic music.

    Parameters
    ----------
    output_dir : str
        Local folder; created if missing.  Existing files with the same names are replaced.
    styles : sequence of str
        Style names (keys of :data:`pipelines.synth_styles.STYLES`).
    clips_per_style : int
        Clips per style, numbered from 0.
    seconds : float
        Length of every clip in seconds.
    sample_rate : int
        Sampling rate in Hz.
    formats : sequence of str
        File formats; clip ``i`` of every style uses ``formats[i % len(formats)]``.
    seed : int
        Master seed; the same seed writes the same bytes.
    corrupt : int
        Number of deliberately broken files to add (see :func:`corrupt_bytes`).
    workers : int, optional
        Worker processes (default ``os.cpu_count()``); 1 renders in this process.

    Returns
    -------
    SynthResult
    """
    opts = SynthOptions.checked(styles=styles, clips_per_style=clips_per_style, seconds=seconds,
                                sample_rate=sample_rate, formats=formats, seed=seed, corrupt=corrupt, workers=workers)
    started = time.perf_counter()
    root = os.path.abspath(output_dir)
    stale = _previous_files(root)
    for style in opts.styles:
        os.makedirs(os.path.join(root, style), exist_ok=True)
    jobs = _clip_jobs(root, opts)
    logger.info("synth: %d clips (%d styles x %d) of %g s at %d Hz, formats %s, %d worker(s) -> %s",
                len(jobs), len(opts.styles), clips_per_style, seconds, sample_rate, ",".join(opts.formats),
                opts.workers, root)
    n_bytes = _render_all(jobs, workers=opts.workers, started=started)
    tracks = _tracks(root, jobs, styles=opts.styles)
    manifest = os.path.join(root, MANIFEST_FILE)
    _write_csv(manifest, MANIFEST_COLUMNS, [(t.uri, t.label, t.track_id, "", "") for t in tracks])
    broken = _write_corrupt_files(root, opts)
    for uri in sorted(stale - {t.uri for t in tracks} - {b.uri for b in broken}):
        os.remove(os.path.join(root, uri))  # a previous, larger run's files would join a glob's matches
    corrupt_manifest = _write_corrupt_manifest(root, broken)
    elapsed = time.perf_counter() - started
    summary = _write_summary(root, opts, tracks=tracks, broken=broken, n_bytes=n_bytes, elapsed=elapsed)
    logger.info("synth: wrote %d clips (%.1f MB) and %d corrupt file(s) in %.1f s", len(tracks), n_bytes / 1e6,
                len(broken), elapsed)
    return SynthResult(output_dir=root, manifest=manifest, corrupt_manifest=corrupt_manifest, summary=summary,
                       tracks=tracks, corrupt=tuple(broken), seconds=elapsed)


def _clip_jobs(root: str, opts: SynthOptions) -> list[_Job]:
    """One job per clip, styles interleaved: progress and early output cover every style."""
    return [
        _Job(root, style, i, opts.formats[i % len(opts.formats)], float(opts.seconds), int(opts.sample_rate),
             int(opts.seed))
        for i in range(opts.clips_per_style)
        for style in opts.styles
    ]


def _render_all(jobs: Sequence[_Job], *, workers: int, started: float) -> int:
    """Render and write every clip (in a process pool unless ``workers`` is 1); -> bytes written."""
    n_bytes = 0
    report_every = max(1, len(jobs) // 10)
    if workers == 1 or len(jobs) <= 1:
        results = map(_render_job, jobs)
        pool = None
    else:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_mp_context())
        results = pool.map(_render_job, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))
    try:
        for done, size in enumerate(results, start=1):
            n_bytes += size
            if done % report_every == 0 or done == len(jobs):
                logger.info("synth: %d/%d clips written (%.1f s)", done, len(jobs), time.perf_counter() - started)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return n_bytes


def _tracks(root: str, jobs: Sequence[_Job], *, styles: Sequence[str]) -> tuple[Track, ...]:
    """The clips written, style by style in index order."""
    return tuple(
        Track(uri=clip_path(j.style, j.index, j.fmt), path=os.path.join(root, clip_path(j.style, j.index, j.fmt)),
              label=j.style, track_id=clip_path(j.style, j.index, j.fmt), format=j.fmt, index=j.index)
        for j in sorted(jobs, key=lambda j: (styles.index(j.style), j.index))
    )


def _write_corrupt_files(root: str, opts: SynthOptions) -> list[CorruptFile]:
    """Write ``opts.corrupt`` broken files, cycling over kinds, styles and formats."""
    broken: list[CorruptFile] = []
    for k in range(opts.corrupt):
        kind = CORRUPT_KINDS[k % len(CORRUPT_KINDS)]
        style = opts.styles[k % len(opts.styles)]
        rng = np.random.default_rng(np.random.SeedSequence([int(opts.seed), zlib.crc32(b"corrupt"), k]))
        ext, data = corrupt_bytes(kind, fmt=opts.formats[k % len(opts.formats)], sample_rate=opts.sample_rate,
                                  rng=rng)
        uri = f"{style}/{style}.corrupt-{k:05d}.{ext}"
        _write_atomic(os.path.join(root, uri), data)
        broken.append(CorruptFile(uri=uri, path=os.path.join(root, uri), kind=kind, label=style))
    return broken


def _write_corrupt_manifest(root: str, broken: Sequence[CorruptFile]) -> str | None:
    """``corrupt.csv`` listing ``broken`` (removed when there are none); -> its path or ``None``."""
    path = os.path.join(root, CORRUPT_FILE)
    if not broken:
        if os.path.exists(path):
            os.remove(path)
        return None
    _write_csv(path, ("uri", "kind", "label"), [(b.uri, b.kind, b.label) for b in broken])
    return path


def _write_summary(root: str, opts: SynthOptions, *, tracks: Sequence[Track], broken: Sequence[CorruptFile],
                   n_bytes: int, elapsed: float) -> str:
    """``synth.json``: the parameters, counts and files of the collection; -> its path."""
    path = os.path.join(root, SUMMARY_FILE)
    write_json_atomic(path, {
        "created": utc_now(),
        "parameters": {**dataclasses.asdict(opts), "styles": list(opts.styles), "formats": list(opts.formats)},
        "counts": {"tracks": len(tracks), "corrupt": len(broken), "bytes": n_bytes,
                   "by_label": {s: opts.clips_per_style for s in opts.styles},
                   "corrupt_by_kind": {k: sum(b.kind == k for b in broken) for k in CORRUPT_KINDS if opts.corrupt}},
        "files": {"manifest": MANIFEST_FILE, "corrupt": CORRUPT_FILE if broken else None},
        "seconds": round(elapsed, 3),
    })
    return path


def _previous_files(root: str) -> set[str]:
    """Relative paths of the files an earlier run wrote into ``root`` (from its manifests), if any.

    Only files that run listed are ever removed: a folder that is not a synth collection is left
    alone.
    """
    found: set[str] = set()
    if not os.path.exists(os.path.join(root, SUMMARY_FILE)):
        return found
    for name in (MANIFEST_FILE, CORRUPT_FILE):
        path = os.path.join(root, name)
        if os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                found.update(row["uri"] for row in csv.DictReader(f) if row.get("uri"))
    return {uri for uri in found if "/" in uri and ".." not in uri and os.path.isfile(os.path.join(root, uri))}


def _write_csv(path: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    _write_atomic(path, buf.getvalue().encode("utf-8"))


# CLI -------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    descriptions = "\n".join(f"  {name:<11} {STYLES[name].description}" for name in STYLE_NAMES)
    p = argparse.ArgumentParser(
        prog="genreflow synth",
        description="Generate a labeled collection of synthetic music in the GTZAN layout "
                    "(DIR/<style>/<style>.NNNNN.<ext>, plus manifest.csv).",
        epilog="styles:\n" + descriptions,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", required=True, help="collection folder to write (local path)")
    p.add_argument("--styles", default=",".join(STYLE_NAMES),
                   help="comma-separated styles to generate (default: all %d)" % len(STYLE_NAMES))
    p.add_argument("--clips-per-style", type=int, default=40, help="clips per style (default 40)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip in seconds (default 10)")
    p.add_argument("--sample-rate", type=int, default=22050, help="sampling rate in Hz (default 22050)")
    p.add_argument("--formats", default="wav",
                   help="comma-separated formats cycled over clips: wav,flac,ogg,mp3 (default wav)")
    p.add_argument("--seed", type=int, default=0, help="master seed; the same seed writes the same bytes (default 0)")
    p.add_argument("--corrupt", type=int, default=0,
                   help="add this many deliberately broken files, listed in corrupt.csv (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all %d cores; 1 = no pool)" % (os.cpu_count() or 1))
    return p


def run(argv: Sequence[str] | None = None) -> SynthResult:
    """Parse ``argv`` (default ``sys.argv[1:]``) and generate the collection."""
    args = _parser().parse_args(argv)
    return write_collection(
        args.output, styles=args.styles, clips_per_style=args.clips_per_style, seconds=args.seconds,
        sample_rate=args.sample_rate, formats=args.formats, seed=args.seed, corrupt=args.corrupt,
        workers=args.workers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: run, print a short summary, return the exit code."""
    try:
        result = run(argv)
    except ValueError as e:
        return report_error("genreflow synth", e)
    print(f"wrote {len(result.tracks)} clips in {len(set(t.label for t in result.tracks))} styles"
          f" and {len(result.corrupt)} corrupt file(s) to {result.output_dir} in {result.seconds:.1f} s")
    print(f"  manifest: {result.manifest}")
    if result.corrupt_manifest:
        print(f"  corrupt:  {result.corrupt_manifest}")
    return 0


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
