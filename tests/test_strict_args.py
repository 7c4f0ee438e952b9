"""Mistyped options are errors, not silently ignored (issue 12, item 6).

``label --rundate 2026-01-01`` used to publish into today's partition, ``featurize --fromat parquet``
wrote TFRecord and ``train --epochz 1`` trained 40 epochs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from genreflow.args import unknown_option_message
from pipelines import featurize, label
from pipelines.options import beam_options_parser, parse_job_args
from training import train


def _last_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_label_rundate_typo_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "labels"
    with pytest.raises(SystemExit) as exc:  # the model dir does not exist: parsing comes first
        label.prepare(["--model-dir", str(tmp_path / "model"), "--input", str(tmp_path / "*.wav"),
                       "--output", str(out), "--rundate", "2026-01-01"])
    assert exc.value.code == 2
    assert _last_error_line(capsys) == "genreflow label: error: unrecognized option --rundate (did you mean --run-date?)"
    assert not out.exists()


def test_featurize_format_typo_exits_2(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        featurize.run(["--input", str(tmp_path / "a.wav"), "--output", str(out), "--fromat", "parquet"])
    assert exc.value.code == 2
    assert _last_error_line(capsys).endswith("unrecognized option --fromat (did you mean --format?)")
    assert not out.exists()


def test_train_epochs_typo_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        train.parse_args(["--data", "d", "--model-dir", "m", "--epochz", "1"])
    assert exc.value.code == 2
    assert _last_error_line(capsys) == "genreflow train: error: unrecognized option --epochz (did you mean --epochs?)"
    # train has no pass-through consumer: a Beam option is as unknown as a typo
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "d", "--model-dir", "m", "--runner", "FnApiRunner"])


LABEL_BASE = ["--model-dir", "m", "--input", "x", "--output", "o"]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--runner", "FnApiRunner", "--direct_num_workers=2"], ["--runner", "FnApiRunner", "--direct_num_workers=2"]),
        (["--runner=DataflowRunner", "--project=p", "--region", "r", "--temp_location=gs://bkt/tmp",
          "--dry_run=True"], None),
        (["--runner", "FlinkRunner", "--flink_master", "localhost:8081", "--parallelism", "2",
          "--environment_type", "LOOPBACK", "--save_main_session"], None),
        (["--runner", "PortableRunner", "--job_endpoint=embed", "--", "--checkpointing_interval=5"],
         ["--runner", "PortableRunner", "--job_endpoint=embed", "--checkpointing_interval=5"]),
    ],
)
def test_beam_options_pass_through_unchanged(extra, expected):
    args, beam_args = parse_job_args(label.build_parser(), LABEL_BASE + extra)
    assert args.model_dir == "m"
    assert beam_args == (expected if expected is not None else extra)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--runer", "FnApiRunner"], "unrecognized option --runer (did you mean --runner?)"),
        (["--direct_num_worker=2"], "unrecognized option --direct_num_worker (did you mean --direct_num_workers?)"),
        (["--top_kk", "2"], "unrecognized option --top_kk (did you mean --top-k?)"),
        (["--zzz"], "unrecognized option --zzz"),
        (["stray"], "unexpected argument 'stray'"),
        (["--direct_num_workers=many"], "invalid int value: 'many'"),
    ],
)
def test_unknown_options_and_bad_beam_values_exit_2_with_one_line(capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        parse_job_args(label.build_parser(), LABEL_BASE + extra)
    assert exc.value.code == 2
    line = _last_error_line(capsys)
    assert line.startswith("genreflow label: error: ") and line.endswith(message)


def test_beam_parser_knows_every_option_beam_knows():
    """Independent check: every option PipelineOptions.get_all_options reports has a flag here."""
    dests = {a.dest for a in beam_options_parser()._actions}
    assert set(PipelineOptions([]).get_all_options()) <= dests


def test_help_says_how_to_pass_runner_only_options(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_job_args(label.build_parser(), ["--help"])
    assert exc.value.code == 0
    assert "after a bare --" in capsys.readouterr().out.replace("\n", " ")


def test_suggestion_prefers_the_dashed_spelling():
    assert unknown_option_message("--rundate=x", ["--run-date", "--run_date", "--output"]).endswith(
        "(did you mean --run-date?)"
    )


def test_training_does_not_import_pipelines_or_beam():
    code = ("import sys, training.train; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pipelines', 'apache_beam')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
