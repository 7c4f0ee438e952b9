"""One command-line style across ``genreflow`` and its commands (issue 14, item 6): ``--version``
in the top-level help, ``choices`` where a value is one of a known set, one boolean style, and one
error format (``genreflow <cmd>: error: <one line>``, exit 2 for input a command refuses)."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from genreflow import __version__, cli
from genreflow.args import USAGE_ERROR, report_error
from pipelines import demo, featurize, synth
from training import evaluate, train
from training.model import ARCHITECTURES
from transforms.spec import SPLITS


def _error_line(err: str, prog: str) -> str:
    """The one ``PROG: error: ...`` line of ``err``, which must be its last line."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert errors == [lines[-1]], err
    assert lines[-1].startswith(f"{prog}: error: "), err
    return lines[-1][len(f"{prog}: error: "):]


# --version ---------------------------------------------------------------------------------------
def test_top_level_help_lists_version_and_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "-V, --version" in out and "-h, --help" in out
    assert all(f"  {name} " in out for name in cli.SUBCOMMANDS)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_distributions(capsys, flag):
    assert cli.main([flag]) == 0
    # The installed package metadata (from setup.py) is the independent reference.
    assert capsys.readouterr().out.strip() == f"genreflow {importlib.metadata.version('genreflow')}"
    assert importlib.metadata.version("genreflow") == __version__


# choices -----------------------------------------------------------------------------------------
BASE = ["--data", "d", "--model-dir", "m"]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_train_arch_accepts_every_architecture(arch):
    assert train.parse_args([*BASE, "--arch", arch]).arch == arch


@pytest.mark.parametrize("split", SPLITS)
def test_every_split_is_accepted(split):
    assert train.parse_args([*BASE, "--eval-split", split]).eval_split == split
    assert evaluate._parser().parse_args([*BASE, "--split", split]).split == split


@pytest.mark.parametrize(
    "parse, option, value, allowed",
    [
        (train.parse_args, "--arch", "resnet", tuple(ARCHITECTURES)),
        (train.parse_args, "--eval-split", "valid", SPLITS),
        (evaluate.run, "--split", "dev", SPLITS),
    ],
)
def test_a_value_outside_the_choices_exits_2_naming_them(tmp_path, capsys, parse, option, value, allowed):
    prog = "genreflow train" if parse is train.parse_args else "genreflow evaluate"
    with pytest.raises(SystemExit) as exc:  # before any work: data and model dir do not exist
        parse(["--data", str(tmp_path / "d"), "--model-dir", str(tmp_path / "m"), option, value])
    assert exc.value.code == USAGE_ERROR
    message = _error_line(capsys.readouterr().err, prog)
    assert message.startswith(f"argument {option}: invalid choice: '{value}'")
    assert all(f"'{name}'" in message for name in allowed)
    assert not list(tmp_path.iterdir())


# booleans ----------------------------------------------------------------------------------------
PARSERS = {"train": train._parser, "evaluate": evaluate._parser, "synth": synth._parser, "demo": demo._parser,
           "featurize": featurize.build_parser}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_switch_is_a_boolean_optional_action(name):
    """``--x`` / ``--no-x`` for every on/off option; no store_true/store_false."""
    parser = PARSERS[name]()
    kinds = {type(a) for a in parser._actions if a.nargs == 0 and not isinstance(a, argparse._HelpAction)}
    assert kinds <= {argparse.BooleanOptionalAction}, (name, kinds)


def test_existing_switch_spellings_still_parse():
    assert train.parse_args(BASE).cache is True and train.parse_args([*BASE, "--no-cache"]).cache is False
    assert train.parse_args(BASE).mixed_precision is False
    assert train.parse_args([*BASE, "--mixed-precision"]).mixed_precision is True
    assert train.parse_args([*BASE, "--time-shift"]).augment.time_shift is True
    assert demo.config_from_args(["--quick"]) == demo.config_from_args(["--quick", "--no-quick", "--quick"])
    assert demo.config_from_args(["--quick"]) != demo.config_from_args(["--no-quick"])


# one error format ----------------------------------------------------------------------------------
def test_unknown_command_and_option_of_the_dispatcher(capsys):
    assert cli.main(["trian"]) == USAGE_ERROR
    message = _error_line(capsys.readouterr().err, "genreflow")
    assert message == ("unknown command 'trian' (did you mean 'train'? choose from "
                       "featurize, train, evaluate, label, synth, demo)")
    assert cli.main(["--verison"]) == USAGE_ERROR
    assert _error_line(capsys.readouterr().err, "genreflow") == "unrecognized option --verison (did you mean --version?)"


def test_commands_refuse_bad_input_with_one_line(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert train.main(["--data", missing, "--model-dir", str(tmp_path / "m"), "--epochs", "1"]) == USAGE_ERROR
    assert missing in _error_line(capsys.readouterr().err, "genreflow train")
    assert evaluate.main(["--data", missing, "--model-dir", missing]) == USAGE_ERROR
    assert missing in _error_line(capsys.readouterr().err, "genreflow evaluate")
    assert synth.main(["--output", str(tmp_path / "s"), "--styles", "polka"]) == USAGE_ERROR
    assert "polka" in _error_line(capsys.readouterr().err, "genreflow synth")


def test_a_failure_while_working_has_the_same_format_and_exit_status_1(tmp_path, capsys, monkeypatch):
    def failing_step(cfg):  # the steps themselves are tested in test_demo.py
        raise demo.DemoStepError("featurize", "no audio matched\nunder DIR")

    monkeypatch.setattr(demo, "run_demo", failing_step)
    assert demo.main(["--output", str(tmp_path / "demo"), "--quick"]) == 1
    message = _error_line(capsys.readouterr().err, "genreflow demo")
    assert message == (f"step 'featurize' failed: no audio matched; under DIR (stopped; outputs so far are in "
                       f"{tmp_path / 'demo'})")


def test_report_error_keeps_every_line_of_a_message(capsys):
    assert report_error("genreflow x", ValueError("first\n  second\n\nthird")) == USAGE_ERROR
    assert capsys.readouterr().err == "genreflow x: error: first; second; third\n"
    assert report_error("genreflow x", FileNotFoundError(), status=1) == 1
    assert capsys.readouterr().err == "genreflow x: error: FileNotFoundError\n"
