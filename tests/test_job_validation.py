"""Usage errors of featurize and label: one line and exit 2, before any work (issue 12, items 9-10)."""

from __future__ import annotations

import pytest

from pipelines import featurize, label


def _error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def clip(tmp_path, write_audio):
    return write_audio(tmp_path / "in" / "rock" / "a.wav", seconds=1.0, sample_rate=8000)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fmin", "12000"], "need 0 <= fmin < fmax <= sample_rate/2 = 11025 Hz"),
        (["--n-mels", "100000"], "n_mels 100000 is more mel bands than the 1025 FFT bins"),
        (["--max-audio-seconds", "-5"], "--max-audio-seconds must be >= 0 (0 = no limit), got -5.0"),
        (["--max-file-mb", "nan"], "--max-file-mb must be >= 0"),
    ],
)
def test_featurize_refuses_nonsense(tmp_path, clip, capsys, extra, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        featurize.run(["--input", str(clip), "--output", str(out), *extra])
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert line.startswith("genreflow featurize: error: ") and message in line
    assert not out.exists()


def test_featurize_output_onto_an_existing_file(tmp_path, clip, capsys):
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        featurize.run(["--input", str(clip), "--output", str(target)])
    assert exc.value.code == 2
    assert _error_line(capsys).endswith(f"--output {target} is an existing file; give a folder")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("case", ["output_file", "num_shards", "model_dir_file"])
def test_label_usage_errors_exit_2_with_one_line(tmp_path, clip, capsys, case):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    out = tmp_path / "labels"
    extra = []
    if case == "output_file":
        out.write_text("keep me")
        expected = "is an existing file; give a folder"
    elif case == "num_shards":
        extra = ["--num-shards", "-1"]
        expected = "--num-shards must be >= 0, got -1"
    else:
        model_dir = tmp_path / "model.bin"
        model_dir.write_bytes(b"not a folder")
        expected = "is a file, not a model dir"
    try:  # argparse usage errors exit from prepare(); model dir errors are returned by main()
        status = label.main(["--input", str(clip), "--model-dir", str(model_dir), "--output", str(out), *extra])
    except SystemExit as e:
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genreflow label: error: ") and expected in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert out.is_file() if case == "output_file" else not out.exists()
