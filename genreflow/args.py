"""Strict command lines: an option no one knows is an error, never silently ignored.

``argparse.parse_known_args`` hands every option the job does not define to the next consumer (Beam
for the pipelines); Beam in turn drops what *it* does not know with a log line.  So ``label
--rundate 2026-01-01`` used to publish into today's partition.  :func:`parse_args_strict` parses the
job's own options, lets a second parser (Beam's options, for the pipelines) claim the rest, and
exits with status 2 and a "did you mean" on the first option neither knows.

It lives in ``genreflow`` so both ``pipelines`` (through :func:`pipelines.options.parse_job_args`)
and ``training`` use it without importing each other.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "parse_args_strict",
    "unknown_option_message",
    "report_error",
    "run_command",
    "pipeline_failure",
    "PassthroughParserMixin",
    "UNCHECKED_EPILOG",
    "USAGE_ERROR",
]

#: Exit status of a command refused before any work (argparse's own status for usage errors).
USAGE_ERROR = 2

#: Added to the ``--help`` of a parser with a pass-through parser.
UNCHECKED_EPILOG = (
    "Options after a bare -- are passed to Beam unchecked (for options that only a runner's job "
    "server defines); every option before it must be the job's own or a Beam pipeline option."
)


class _PassthroughError(Exception):
    """A value the pass-through parser rejects (``--direct_num_workers=x``)."""


class PassthroughParserMixin:
    """Mix into a pass-through parser's class: its errors are raised to :func:`parse_args_strict`
    (reported through the job's parser, as one line) instead of printing its own usage and exiting."""

    prog: str

    def error(self, message: str) -> None:  # noqa: D102
        raise _PassthroughError(f"{self.prog}: {message}")


def _option_strings(*parsers: argparse.ArgumentParser | None) -> list[str]:
    return [s for p in parsers if p is not None for a in p._actions for s in a.option_strings if s.startswith("--")]


def unknown_option_message(token: str, known: Sequence[str]) -> str:
    """One line naming ``token`` and, when one is close (difflib), the option probably meant.

    Parameters
    ----------
    token : str
        The first unknown command-line token (``--rundate`` or ``--rundate=2026-01-01``).
    known : sequence of str
        Every option string that would have been accepted.
    """
    if not token.startswith("-"):
        return f"unexpected argument {token!r}"
    name = token.split("=", 1)[0]
    # Compare with - and _ unified, so --run_dat finds --run-date; suggest the spelling as defined.
    canonical: dict[str, str] = {}
    for k in known:  # the first spelling defined (--run-date before its alias --run_date) wins
        canonical.setdefault(k.replace("_", "-"), k)
    close = difflib.get_close_matches(name.replace("_", "-"), list(canonical), n=1, cutoff=0.7)
    hint = f" (did you mean {canonical[close[0]]}?)" if close else ""
    return f"unrecognized option {name}{hint}"


def parse_args_strict(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    passthrough: argparse.ArgumentParser | None = None,
) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv`` with ``parser``; anything left must parse with ``passthrough``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The job's own options.
    argv : sequence of str, optional
        Command line without the program name; ``sys.argv[1:]`` when omitted.
    passthrough : argparse.ArgumentParser, optional
        Options handed on to another consumer (Beam's pipeline options).  ``None``: every
        option must be the job's own.  When given, tokens after a bare ``--`` are handed on
        unchecked (and ``--help`` says so).

    Returns
    -------
    args : argparse.Namespace
        The job's options.
    rest : list of str
        The tokens for the pass-through consumer, in order (empty without ``passthrough``).

    Raises
    ------
    SystemExit
        Status 2 through ``parser.error`` (usage, then one ``prog: error: ...`` line) for the first
        token neither parser knows, or a value the pass-through parser rejects.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    unchecked: list[str] = []
    if passthrough is not None:
        if UNCHECKED_EPILOG not in (parser.epilog or ""):
            parser.epilog = f"{parser.epilog}\n\n{UNCHECKED_EPILOG}" if parser.epilog else UNCHECKED_EPILOG
        if "--" in argv:
            cut = argv.index("--")
            argv, unchecked = argv[:cut], argv[cut + 1 :]
    args, rest = parser.parse_known_args(argv)
    unknown = rest
    if passthrough is not None and rest:
        try:
            _, unknown = passthrough.parse_known_args(rest)
        except _PassthroughError as e:
            parser.error(str(e))
    if unknown:
        parser.error(unknown_option_message(unknown[0], _option_strings(parser, passthrough)))
    return args, (rest + unchecked if passthrough is not None else [])


def pipeline_failure(error: BaseException) -> str:
    """One line for a job whose pipeline failed: ``the pipeline failed, nothing committed: Type: last line``.

    Runner exceptions carry whole worker tracebacks; their last line names the cause.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"the pipeline failed, nothing committed: {type(error).__name__}: {lines[-1] if lines else ''}"


def report_error(prog: str, error: BaseException | str, *, status: int = USAGE_ERROR) -> int:
    """Print ``PROG: error: MESSAGE`` as one line on stderr, the format of ``parser.error``.

    Every ``genreflow`` command reports a refusal this way, whether argparse or the command's own
    checks find the problem.

    Parameters
    ----------
    prog : str
        The command, ``genreflow train``.
    error : BaseException or str
        What went wrong; a message of several lines is joined with ``"; "`` (nothing dropped).
    status : int
        Exit status to return: :data:`USAGE_ERROR` (2) for input the command refuses, 1 for a
        failure while working.

    Returns
    -------
    int
        ``status``, for ``return report_error(...)`` in a ``main``.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = "; ".join(lines) or (type(error).__name__ if isinstance(error, BaseException) else "failed")
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def run_command(
    prog: str,
    run: Callable[[Sequence[str] | None], Any],
    argv: Sequence[str] | None,
    *,
    report: Callable[[Any], Iterable[str]],
    refused: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError),
) -> int:
    """The ``main`` of a command that is not a Beam job: run it, print its short report, return 0.

    Parameters
    ----------
    prog : str
        The command, ``genreflow train``.
    run : callable
        ``run(argv)``: parses the options and does the work; returns what ``report`` needs.
    argv : sequence of str, optional
        Command-line arguments (``None``: ``sys.argv[1:]``).
    report : callable
        ``report(result)`` yields the lines printed on stdout when the command succeeds.
    refused : tuple of exception types
        Errors that mean unusable input (a missing dataset, mismatched parameters): one line on
        stderr (:func:`report_error`) and exit status 2 instead of a traceback.

    Returns
    -------
    int
        The exit status.
    """
    try:
        result = run(argv)
    except refused as e:
        return report_error(prog, e)
    for line in report(result):
        print(line)
    return 0
