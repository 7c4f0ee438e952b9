"""Options shared by the Beam jobs: spectrogram parameters and the choice of runner.

Runner rule (:func:`resolve_runner`): genreflow never lets Beam pick the local runner.  Beam 2.77's
DirectRunner first tries to download the Prism runner from GitHub and, offline, silently falls
back to another runner, so the same command would run differently on a laptop and in CI.  When the
command line names no ``--runner``, or names ``DirectRunner``, the job runs

- ``PrismRunner`` when ``--prism_location BIN`` is given (``make prism-setup`` builds ``BIN``);
- else the ``FnApiRunner``, with one worker process per CPU core
  (``--direct_running_mode=multi_processing --direct_num_workers=<cores>``), or in-process when an
  input or output lives on ``memory://`` (a worker process cannot see the launcher's memory
  filesystem); ``--direct_running_mode``/``--direct_num_workers`` given by the user win.

``--runner PrismRunner`` without ``--prism_location`` uses the binary ``make prism-setup`` installed
in the checkout when there is one.  Any other ``--runner`` and every other standard Beam option pass
through unchanged.  The runner and the reason for it are logged when the options are built.

Option rule: an option that is neither the job's own nor a Beam pipeline option is an error (exit
2, with a "did you mean"), see :func:`parse_job_args`; Beam itself would drop it with a log line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Sequence

import fsspec

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from genreflow.args import PassthroughParserMixin, parse_args_strict

from transforms.beam_audio import ReadLimits
from transforms.spec import DEFAULT_HOP_FRACTION, PRESETS, SpectrogramParams
from transforms.storage import protocol_of

__all__ = [
    "add_spectrogram_args",
    "add_limit_args",
    "beam_options_parser",
    "parse_job_args",
    "check_job_args",
    "is_dry_run",
    "limits_from_args",
    "params_from_args",
    "pipeline_options",
    "has_option",
    "needs_in_process",
    "DEFAULT_LOCAL_RUNNER",
    "INSTALLED_PRISM",
    "RunnerChoice",
    "resolve_runner",
]

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_RUNNER = "FnApiRunner"
#: Where ``make prism-setup`` installs the Prism binary (only in a source checkout; git-ignored).
INSTALLED_PRISM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".prism", "bin", "prism")


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
                   help="distance between segment starts in seconds (default: half the segment length, "
                        f"{d.segment_seconds * DEFAULT_HOP_FRACTION:g} s, segments overlapping by half; with "
                        "--preset, the preset's own hop)")
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
    option was given.  Without ``--segment-hop-seconds`` the hop is
    :data:`~transforms.spec.DEFAULT_HOP_FRACTION` (one half) of the segment, except under a
    preset, which keeps its own hop (or, with ``--segment-seconds``, no overlap); ``--top-db`` of
    0 or less means ``None``.

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
    if "segment_hop_seconds" not in given:
        segment = given.get("segment_seconds", base.segment_seconds)
        if not getattr(args, "preset", None):
            given["segment_hop_seconds"] = segment * DEFAULT_HOP_FRACTION
        elif "segment_seconds" in given:
            given["segment_hop_seconds"] = segment
    if "top_db" in given and given["top_db"] <= 0:
        given["top_db"] = None
    return dataclasses.replace(base, **given)


class _BeamOptionsParser(PassthroughParserMixin, _BeamArgumentParser):
    """Beam's own option parser class (it adds ``add_value_provider_argument``), raising on errors."""


def beam_options_parser() -> argparse.ArgumentParser:
    """A parser of every Beam pipeline option registered in this process.

    Built as ``PipelineOptions.get_all_options`` builds its own: each subclass of
    ``PipelineOptions`` (standard, Google Cloud, worker, direct, portable, Flink, Spark, Prism, S3,
    ... and any a runner module registers by defining one) adds its flags, without abbreviations.
    What this parser leaves unparsed, Beam would drop.
    """
    parser = _BeamOptionsParser(prog="Beam pipeline options", allow_abbrev=False, add_help=False,
                                conflict_handler="resolve")
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - the registry Beam itself reads
    return parser


def parse_job_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse a Beam job's command line: its own options, then Beam's; anything else is an error.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The job's options.
    argv : sequence of str, optional
        Command line without the program name (``sys.argv[1:]`` when omitted).

    Returns
    -------
    args : argparse.Namespace
        The job's options.
    beam_args : list of str
        The Beam pipeline options, for :func:`pipeline_options`; tokens after a bare ``--`` are
        added unchecked (options only a runner's job server defines).

    Raises
    ------
    SystemExit
        Status 2, with ``prog: error: unrecognized option --rundate (did you mean --run-date?)``,
        for an option that neither the job nor Beam defines, or a Beam option with a bad value.
    """
    return parse_args_strict(parser, argv, passthrough=beam_options_parser())


def _is_file(uri: str) -> bool:
    """Whether ``uri`` is an existing file (not a folder) on a local disk or ``memory://``.

    Object stores are not asked: without credentials (a Dataflow ``--dry_run``) gcsfs retries for
    about a minute before failing, and a key named like a folder is no clash there.
    """
    if protocol_of(uri) not in ("file", "memory"):
        return False
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return bool(fs.isfile(path))
    except Exception:  # unreachable store, missing credentials: the job itself will say so
        return False


def check_job_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks every Beam job needs before any work; ``parser.error`` (exit 2, one line) on the first.

    Looks at the options the job has: ``--output`` must not be an existing file (it is a folder of
    shards or partitions), ``--num-shards`` must be >= 0, ``--max-file-mb`` and
    ``--max-audio-seconds`` must be >= 0 (0 = no limit).
    """
    output = getattr(args, "output", None)
    if output and _is_file(output):
        parser.error(f"--output {output} is an existing file; give a folder")
    num_shards = getattr(args, "num_shards", None)
    if num_shards is not None and num_shards < 0:
        parser.error(f"--num-shards must be >= 0, got {num_shards}")
    for name in ("max_file_mb", "max_audio_seconds"):
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            parser.error(f"--{name.replace('_', '-')} must be >= 0 (0 = no limit), got {value}")


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
    return any(protocol_of(u) == "memory" for u in uris)


@dataclass(frozen=True)
class RunnerChoice:
    """The runner a job runs on, with the Beam arguments that make it explicit.

    Attributes
    ----------
    runner : str
        The ``--runner`` value Beam will get.
    args : list of str
        The Beam arguments, with ``--runner`` and its settings added.
    reason : str
        One line for the job's log: the runner, its mode and why it was chosen.
    """

    runner: str
    args: list[str]
    reason: str


def _option_value(args: Sequence[str], name: str) -> str | None:
    """The value of the last ``--name=v`` / ``--name v`` in ``args``; None when absent."""
    flag, value = "--" + name, None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1:]
    return value


def _runner_is(runner: str, name: str) -> bool:
    """Whether ``runner`` names Beam's ``<name>Runner`` (``Direct``, ``DirectRunner``, a dotted path)."""
    short = runner.rsplit(".", 1)[-1].lower()
    return short in (name.lower(), name.lower() + "runner")


def _local_runner_args(args: list[str], *, needs_in_process: bool) -> list[str]:
    """``args`` with the local runner's ``--direct_running_mode`` and ``--direct_num_workers``: in memory
    with one worker when ``needs_in_process`` (given values dropped), else what was given, by default
    multi-processing on every core."""
    if needs_in_process:
        if has_option(args, "direct_running_mode") or has_option(args, "direct_num_workers"):
            logger.warning("memory:// paths need the in-process runner; ignoring --direct_* options")
        args = _drop_option(_drop_option(args, "direct_running_mode"), "direct_num_workers")
        return args + ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
    if not has_option(args, "direct_running_mode"):
        args = args + ["--direct_running_mode", "multi_processing"]
    if not has_option(args, "direct_num_workers") and _option_value(args, "direct_running_mode") != "in_memory":
        args = args + ["--direct_num_workers", str(os.cpu_count() or 1)]
    return args


def resolve_runner(beam_args: Sequence[str], *, needs_in_process: bool = False,
                   installed_prism: str | None = INSTALLED_PRISM) -> RunnerChoice:
    """Make the runner explicit (see the module docstring for the rule).

    Parameters
    ----------
    beam_args : sequence of str
        Standard Beam options from the command line.
    needs_in_process : bool
        The FnApiRunner must run in the launcher process (``memory://`` inputs or outputs).
    installed_prism : str or None
        Path of a Prism binary installed with the checkout; used for ``--runner PrismRunner``
        without ``--prism_location`` and named in the log line when it exists.

    Returns
    -------
    RunnerChoice
    """
    args = list(beam_args)
    runner = _option_value(args, "runner")
    prism_location = _option_value(args, "prism_location")
    installed = installed_prism if installed_prism and os.access(installed_prism, os.X_OK) else None
    if runner is not None and not _runner_is(runner, "Direct"):
        if _runner_is(runner, "Prism") and prism_location is None:
            if installed:
                return RunnerChoice(runner, args + ["--prism_location", installed],
                                    f"{runner} with the binary make prism-setup installed: {installed}")
            return RunnerChoice(runner, args, f"{runner} without --prism_location: Beam downloads Prism from GitHub "
                                              "(fails offline; make prism-setup builds it)")
        return RunnerChoice(runner, args, f"{runner} (--runner)")
    asked = f"--runner {runner}" if runner else "no --runner"
    args = _drop_option(args, "runner")
    if prism_location is not None:
        return RunnerChoice("PrismRunner", args + ["--runner", "PrismRunner"],
                            f"PrismRunner at {prism_location} ({asked}, --prism_location given)")
    args = _local_runner_args(args + ["--runner", DEFAULT_LOCAL_RUNNER], needs_in_process=needs_in_process)
    mode = _option_value(args, "direct_running_mode")
    workers = _option_value(args, "direct_num_workers")
    reason = (f"{DEFAULT_LOCAL_RUNNER}, {mode}" + (f", {workers} workers" if workers else "")
              + f" ({asked}; Beam's DirectRunner would try to download Prism and fall back silently offline)")
    if installed:
        reason += f"; Prism is installed: add --prism_location {installed} to run on it"
    return RunnerChoice(DEFAULT_LOCAL_RUNNER, args, reason)


def pipeline_options(beam_args: Sequence[str], *, needs_in_process: bool = False) -> PipelineOptions:
    """Beam options from the arguments the job did not parse itself, with an explicit runner.

    Parameters
    ----------
    beam_args : sequence of str
        Remaining command-line arguments (standard Beam options); passed through unchanged.
    needs_in_process : bool
        Run the default local runner in the launcher process (required for ``memory://``).

    Returns
    -------
    PipelineOptions
        With the runner chosen by :func:`resolve_runner`, which is logged with its reason.
    """
    choice = resolve_runner(beam_args, needs_in_process=needs_in_process)
    logger.info("runner: %s", choice.reason)
    return PipelineOptions(choice.args)


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether ``--dry_run`` was given: Beam takes it as a string, so any value but empty/None
    (``--dry_run=False`` included) means a dry run that translates and submits nothing."""
    return str(options.get_all_options().get("dry_run") or "").lower() not in ("", "none")
