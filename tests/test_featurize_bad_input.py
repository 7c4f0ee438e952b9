"""Bad inputs become dead letters and the job finishes; bad command lines fail before any work."""

from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genreflow import cli
from pipelines import featurize
from transforms.metadata import read_metadata

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dead_letters(out, run_dir=None):
    """Dead letters of the committed run (or of the run folder ``run_dir``)."""
    files = ([os.path.join(out, name) for name in read_metadata(out).dead_letters] if run_dir is None
             else sorted(glob.glob(os.path.join(run_dir, "errors", "dead_letters-*.jsonl"))))
    assert files
    letters = []
    for path in files:
        with open(path) as f:
            letters += [json.loads(line) for line in f]
    return letters


@pytest.fixture
def mixed_corpus(tmp_path, make_gtzan_tree, make_bad_files):
    """4 good 2 s clips in root/<genre>/ and every kind of bad file in root/bad/."""
    root = tmp_path / "mixed"
    good = make_gtzan_tree(root, genres=("folk", "soul"), per_genre=2, seconds=2.0, formats=("wav", "ogg"))
    bad = make_bad_files(root)
    return root, good, bad


@pytest.mark.slow
def test_every_bad_file_is_one_dead_letter_and_the_job_finishes(tmp_path, mixed_corpus, capsys):
    root, good, bad = mixed_corpus
    out = str(tmp_path / "out")
    # 8 of 12 inputs fail, more than the default --max-error-fraction: exit 1, nothing committed
    status = featurize.main(["--input", f"{root}/**", "--output", out, "--segment-seconds", "1", *IN_PROCESS])
    assert status == 1
    captured = capsys.readouterr()
    assert "more than --max-error-fraction 0.1" in captured.err and "nothing committed" in captured.err
    assert "8 failed" in captured.out  # the summary is printed too
    assert not os.path.exists(os.path.join(out, "metadata.json"))
    (failed_run,) = glob.glob(os.path.join(out, "run_id=*"))  # its dead letters stay for inspection
    assert dead_letters(out, failed_run)

    # the same inputs with a tolerant threshold: committed, every bad file one dead letter
    assert featurize.main(["--input", f"{root}/**", "--output", out, "--segment-seconds", "1",
                           "--max-error-fraction", "0.9", *IN_PROCESS]) == 0
    md = read_metadata(out)
    assert md.inputs == {"matched": len(good) + len(bad), "featurized": len(good), "failed": len(bad)}
    letters = dead_letters(out)
    assert sorted(d["uri"] for d in letters) == sorted(bad)
    for d in letters:
        assert d["reason"] == bad[d["uri"]], d
        assert d["message"] and d["stage"] in ("read", "decode", "segment")
    assert md.failures == {r: list(bad.values()).count(r) for r in set(bad.values())}
    assert md.counts["train"]["tracks"] + md.counts["validation"]["tracks"] + md.counts["test"]["tracks"] == len(good)


@pytest.mark.slow
def test_unreadable_paths_from_a_manifest_are_dead_letters(tmp_path, mixed_corpus):
    root, good, _ = mixed_corpus
    folder = root / "bad" / "folder.wav"
    folder.mkdir()
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uri", "label"])
        for path, genre in good.items():
            w.writerow([path, genre])
        w.writerow([str(root / "bad" / "missing.flac"), "folk"])
        w.writerow([str(folder), "folk"])
    out = str(tmp_path / "out")
    result = featurize.run(["--manifest", str(manifest), "--output", out, "--format", "parquet",
                            "--max-error-fraction", "0.5", "--segment-seconds", "1", *IN_PROCESS])
    md = result.metadata
    assert md.inputs == {"matched": 6, "featurized": 4, "failed": 2}
    letters = dead_letters(out)
    assert {(d["reason"], d["stage"]) for d in letters} == {("read_error", "read")}
    assert {os.path.basename(d["uri"]) for d in letters} == {"missing.flac", "folder.wav"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "csv"], "invalid choice: 'csv'"),
        (["--segment-seconds", "-1"], "segment_seconds must be positive"),
        (["--split", "0.5,0.5,0.5"], "must sum to 1"),
        (["--split", "0.8,0.2"], "need 3 split fractions"),
        (["--num-shards", "-2"], "--num-shards must be >= 0"),
        (["--max-error-fraction", "1.5"], "--max-error-fraction must be in [0, 1]"),
        (["--n-mels", "0"], "must be positive"),
        (["--input", "{tmp}/nothing/**/*.wav"], "does not exist"),
        (["--manifest", "{tmp}/missing.csv"], "missing.csv"),
        (["--manifest", "{tmp}/nouri.csv"], "needs a 'uri' column"),
        (["--sample", "0"], "--sample must be in (0, 1]"),
        (["--labels", " , "], "--labels needs at least one label"),
        (["--output", "{tmp}/a.wav"], "is an existing file"),
        (["--manifest", "{tmp}/m.csv", "--input", "{tmp}/a.wav"], "not allowed with argument"),
    ],
)
def test_bad_command_lines_fail_before_any_work(tmp_path, capsys, args, message):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text("uri\na.wav\n")
    (tmp_path / "nouri.csv").write_text("path\na.wav\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--input" not in args and "--manifest" not in args:
        args = ["--input", str(tmp_path / "a.wav"), *args]
    out = tmp_path / "out"
    if "--output" not in args:
        args += ["--output", str(out)]
    with pytest.raises(SystemExit) as exc:
        featurize.run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genreflow featurize: error:") and message in err[-1]
    assert not out.exists()


def test_help_through_the_console_script_and_python_m(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["featurize", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--input", "--manifest", "--output", "--format", "--split", "--num-shards",
                   "--max-error-fraction", "--segment-seconds", "--min-tail-fraction"):
        assert option in text
    proc = subprocess.run([sys.executable, "-m", "pipelines.featurize", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--max-error-fraction" in proc.stdout


def test_read_limits_bound_file_size_and_decoded_duration(tmp_path, write_audio):
    """--max-file-mb turns an oversized file into a too_large dead letter before reading it;
    --max-audio-seconds decodes only the start of a long track."""
    from transforms.beam_audio import ReadLimits, featurize_or_dead_letter, featurize_track
    from transforms.deadletters import DeadLetter
    from transforms.sources import TrackRef
    from transforms.spec import SpectrogramParams

    params = SpectrogramParams(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, segment_seconds=1.0)
    path = write_audio(tmp_path / "rock" / "long.wav", seconds=10.0, sample_rate=8000)
    ref = TrackRef(uri=str(path), track_id="rock/long.wav", label="rock")

    whole = featurize_track(ref, params=params, limits=ReadLimits(max_bytes=None, max_seconds=None))
    assert len(whole.mels) == 10
    capped = featurize_track(ref, params=params, limits=ReadLimits(max_bytes=None, max_seconds=3.5))
    assert capped.duration_seconds == pytest.approx(3.5)
    assert len(capped.mels) == 4  # three full segments + a 0.5 s tail (min_tail_fraction 0.5)
    np.testing.assert_allclose(capped.mels[:3], whole.mels[:3], atol=1e-4)

    letter = featurize_or_dead_letter(ref, params=params, limits=ReadLimits(max_bytes=1000, max_seconds=None))
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.stage) == ("too_large", "read")
    assert "1000" in letter.message


@pytest.mark.slow
def test_a_failing_pipeline_is_one_line_and_exit_1(tmp_path, make_gtzan_tree, monkeypatch, capsys):
    make_gtzan_tree(tmp_path / "c", genres=("a",), per_genre=1, seconds=1.0)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(featurize, "open_shard_writer", disk_full)
    status = featurize.main(["--input", str(tmp_path / "c"), "--output", str(tmp_path / "out"),
                             "--segment-seconds", "1", *IN_PROCESS])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith("genreflow featurize: error: the pipeline failed, nothing committed: ")
    assert "OSError: No space left on device" in err[-1] and not os.path.exists(tmp_path / "out" / "metadata.json")
