"""Options shared by the Beam jobs: spectrogram parameters and the choice of runner.

Runner rule: when the command line names no ``--runner``, genreflow does not let Beam pick (Beam
2.77's DirectRunner tries to download the Prism runner and silently falls back to another runner
when offline, so the same command would run differently on a laptop and in CI).  It runs the
``FnApiRunner`` explicitly, with one worker process per CPU core
(``--direct_running_mode=multi_processing --direct_num_workers=<cores>``), or in-process when an
input or output lives on ``memory://`` (a worker process cannot see the launcher's memory
filesystem).  Any ``--runner`` and every other standard Beam option given by the user pass through
unchanged, and ``--direct_running_mode``/``--direct_num_workers`` given by the user win.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.beam_audio import ReadLimits
from transforms.spec import PRESETS, SpectrogramParams

__all__ = [
    "add_spectrogram_args",
    "add_limit_args",
    "is_dry_run",
    "limits_from_args",
    "params_from_args",
    "pipeline_options",
    "has_option",
    "needs_in_process",
    "DEFAULT_LOCAL_RUNNER",
]

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_RUNNER = "FnApiRunner"


def add_spectrogram_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset`` and one option per :class:`SpectrogramParams` field.

    An option left out takes its value from ``--preset`` when one is given, from the dataclass
    defaults otherwise (see :func:`params_from_args`); the defaults shown in ``--help`` are the
    dataclass's.
    """
    d = SpectrogramParams()
    g = parser.add_argument_group("spectrogram", "log-mel and segment parameters (stored in metadata.json)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="start from a named parameter set; options given explicitly override it. musicnn: "
                        "musicnn's front end (16 kHz, n_fft 512, hop 256, 96 mels, log10(1 + 10000 S), 187-frame "
                        "segments of 2.976 s), required by `genreflow train --backbone musicnn-*`")
    g.add_argument("--sample-rate", "--sample_rate", type=int, default=None,
                   help=f"target sample rate in Hz; audio is mixed to mono and resampled (default {d.sample_rate})")
    g.add_argument("--n-fft", "--n_fft", type=int, default=None, help=f"FFT window in samples (default {d.n_fft})")
    g.add_argument("--hop-length", "--hop_length", type=int, default=None,
                   help=f"STFT hop in samples (default {d.hop_length})")
    g.add_argument("--n-mels", "--n_mels", type=int, default=None, help=f"mel bands (default {d.n_mels})")
    g.add_argument("--fmin", type=float, default=None, help=f"lowest mel frequency in Hz (default {d.fmin:g})")
    g.add_argument("--fmax", type=float, default=None, help="highest mel frequency in Hz (default: sample_rate/2)")
    g.add_argument("--segment-seconds", "--segment_seconds", type=float, default=None,
                   help=f"segment length in seconds (default {d.segment_seconds:g})")
    g.add_argument("--segment-hop-seconds", "--segment_hop_seconds", type=float, default=None,
                   help="distance between segment starts in seconds (default: the segment length, no overlap)")
    g.add_argument("--log", choices=("db", "log1p", "logc"), default=None,
                   help="log compression: db = librosa.power_to_db(ref=1.0), log1p = log(1+S), "
                        "logc = log10(1 + 10000 S) (default db)")
    g.add_argument("--top-db", "--top_db", type=float, default=None,
                   help=f"dB range kept below each segment's peak; 0 or less keeps all (default {d.top_db:g})")
    g.add_argument("--min-tail-fraction", "--min_tail_fraction", type=float, default=None,
                   help="a trailing partial segment (or a whole clip shorter than one segment) at least this "
                        "fraction of a segment is zero-padded and kept; shorter is dropped (a clip: dead letter "
                        f"too_short) (default {d.min_tail_fraction:g})")


def add_limit_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-file-mb`` and ``--max-audio-seconds``: per-input bounds on worker memory."""
    d = ReadLimits()
    g = parser.add_argument_group("input limits", "bounds on what one input may cost a worker")
    g.add_argument("--max-file-mb", "--max_file_mb", type=float, default=d.max_bytes / 2**20,
                   help="files larger than this many MiB are not read: dead letter too_large; 0 = no limit "
                        f"(default {d.max_bytes / 2**20:g})")
    g.add_argument("--max-audio-seconds", "--max_audio_seconds", type=float, default=d.max_seconds,
                   help="decode at most this many seconds from the start of each track; 0 = whole tracks "
                        f"(default {d.max_seconds:g})")


def limits_from_args(args: argparse.Namespace) -> ReadLimits:
    """Build :class:`ReadLimits` from :func:`add_limit_args` options (0 or less = no limit)."""
    return ReadLimits(
        max_bytes=int(args.max_file_mb * 2**20) if args.max_file_mb > 0 else None,
        max_seconds=args.max_audio_seconds if args.max_audio_seconds > 0 else None,
    )


def params_from_args(args: argparse.Namespace) -> SpectrogramParams:
    """Build :class:`SpectrogramParams` from :func:`add_spectrogram_args` options.

    Start from ``PRESETS[args.preset]`` (or the dataclass defaults) and replace every field whose
    option was given.  ``--segment-seconds`` without ``--segment-hop-seconds`` also sets the hop
    (no overlap); ``--top-db`` of 0 or less means ``None``.

    Raises
    ------
    ValueError
        From the dataclass's validation, naming every bad value.
    """
    base = PRESETS[args.preset] if getattr(args, "preset", None) else SpectrogramParams()
    given = {
        name: getattr(args, name)
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "segment_seconds",
                     "segment_hop_seconds", "log", "top_db", "min_tail_fraction")
        if getattr(args, name, None) is not None
    }
    if "segment_seconds" in given and "segment_hop_seconds" not in given:
        given["segment_hop_seconds"] = given["segment_seconds"]
    if "top_db" in given and given["top_db"] <= 0:
        given["top_db"] = None
    return dataclasses.replace(base, **given)


def has_option(beam_args: Sequence[str], name: str) -> bool:
    """Whether ``--name`` (``--name=v`` or ``--name v``) is among ``beam_args``."""
    flag = "--" + name
    return any(a == flag or a.startswith(flag + "=") for a in beam_args)


def _drop_option(args: Sequence[str], name: str) -> list[str]:
    """``args`` without ``--name=v`` / ``--name v``."""
    flag, out, skip = "--" + name, [], False
    for a in args:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def needs_in_process(uris: Sequence[str]) -> bool:
    """True when any of ``uris`` is on ``memory://``, which only the launcher process can see."""
    return any(u.startswith("memory://") for u in uris)


def pipeline_options(beam_args: Sequence[str], *, needs_in_process: bool = False) -> PipelineOptions:
    """Beam options from the arguments the job did not parse itself, with an explicit local runner.

    Parameters
    ----------
    beam_args : sequence of str
        Remaining command-line arguments (standard Beam options); passed through unchanged.
    needs_in_process : bool
        Run the default local runner in the launcher process (required for ``memory://``).

    Returns
    -------
    PipelineOptions
        With ``--runner FnApiRunner`` and the multi-process settings added when the user gave no
        ``--runner`` (see the module docstring).
    """
    args = list(beam_args)
    if not has_option(args, "runner"):
        args += ["--runner", DEFAULT_LOCAL_RUNNER]
        if needs_in_process:
            if has_option(args, "direct_running_mode") or has_option(args, "direct_num_workers"):
                logger.warning("memory:// paths need the in-process runner; ignoring --direct_* options")
            args = _drop_option(_drop_option(args, "direct_running_mode"), "direct_num_workers")
            args += ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
        else:
            if not has_option(args, "direct_running_mode"):
                args += ["--direct_running_mode", "multi_processing"]
            in_memory = any(a in ("in_memory", "--direct_running_mode=in_memory") for a in args)
            if not has_option(args, "direct_num_workers") and not in_memory:
                args += ["--direct_num_workers", str(os.cpu_count() or 1)]
    return PipelineOptions(args)


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether ``--dry_run`` was given: Beam takes it as a string, so any value but empty/None
    (``--dry_run=False`` included) means a dry run that translates and submits nothing."""
    return str(options.get_all_options().get("dry_run") or "").lower() not in ("", "none")
