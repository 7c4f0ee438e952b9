"""The ``genreflow`` console command: a thin dispatcher to the job and trainer modules.

Each subcommand is a module with ``run(argv=None)``; ``genreflow SUB --help`` shows that module's
own options (Beam jobs also accept every standard Beam pipeline option).
"""

from __future__ import annotations

import difflib
import importlib
import sys

from genreflow.args import report_error, unknown_option_message
from genreflow.logs import configure_logging

# name -> (module, one-line description); modules are imported only when chosen.
SUBCOMMANDS = {
    "featurize": ("pipelines.featurize", "audio files -> log-mel spectrogram shards (Beam)"),
    "train": ("training.train", "train a CNN on featurized shards and export a model dir"),
    "evaluate": ("training.evaluate", "evaluate a model dir on featurized data"),
    "label": ("pipelines.label", "label a catalog of audio with a trained model (Beam)"),
    "synth": ("pipelines.synth", "generate a labeled collection of synthetic music"),
    "demo": ("pipelines.demo", "synth -> featurize -> train -> label -> report, end to end"),
}


USAGE = "usage: genreflow [-h] [-V] <command> [options]   (genreflow <command> --help for its options)"


def _usage() -> str:
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name:<15} {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    lines += ["", "options:", f"  {'-h, --help':<15} show this help and exit",
              f"  {'-V, --version':<15} print the genreflow version and exit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from genreflow import __version__

        print(f"genreflow {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(USAGE, file=sys.stderr)
        if name.startswith("-"):
            return report_error("genreflow", unknown_option_message(name, ["--help", "--version"]))
        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return report_error("genreflow", f"unknown command {name!r} ({hint}choose from {', '.join(SUBCOMMANDS)})")
    configure_logging()
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result = module.main(rest) if hasattr(module, "main") else module.run(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
