"""Tests of ``genreflow demo``: the report pieces (fast) and a small run end to end (slow)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pipelines import demo, synth
from transforms.spec import SpectrogramParams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert float(pixels[..., :3].std()) > 0.01, f"{path} is blank"


def test_catalog_accuracy_joins_rows_with_truth():
    truth = {"a/1": "jazz", "a/2": "jazz", "b/1": "rock", "b/2": "rock", "c/1": "folk"}
    rows = [
        {"track_id": "a/1", "uri": "/x/a/1", "genre": "jazz", "score": 0.9},
        {"track_id": "a/2", "uri": "/x/a/2", "genre": "rock", "score": 0.6},
        {"track_id": "b/1", "uri": "/x/b/1", "genre": "rock", "score": 0.8},
        {"track_id": "c/1", "uri": "/x/c/1", "genre": "folk", "score": 0.7},
        {"track_id": "zzz", "uri": "/x/zzz", "genre": "rock", "score": 0.4},  # not in the catalog
    ]  # b/2 has no row (dead-lettered): it counts as wrong
    labels = ["folk", "jazz", "rock"]
    out = demo.catalog_accuracy(rows, truth, labels=labels)
    assert out["correct"] == 3 and out["tracks"] == 5 and out["labeled"] == 4
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["missing"] == ["b/2"] and out["unexpected"] == ["zzz"]
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(out["confusion"], expected)
    by_id = {j["track_id"]: j for j in out["joined"]}
    assert by_id["a/2"]["predicted"] == "rock" and not by_id["a/2"]["correct"]
    assert by_id["b/2"]["predicted"] == "" and np.isnan(by_id["b/2"]["score"])


def test_plot_gallery_writes_a_png(tmp_path):
    result = synth.write_collection(str(tmp_path / "c"), styles=("ambient", "metal", "reggae"), clips_per_style=1,
                                    seconds=3.0, formats=("flac",), workers=1)
    examples = {t.label: t.path for t in result.tracks}
    path = demo.plot_gallery(examples, params=SpectrogramParams(), path=str(tmp_path / "gallery.png"))
    _assert_png(path)


def test_config_from_args_quick_and_overrides():
    full = demo.config_from_args(["--output", "x"])
    quick = demo.config_from_args(["--output", "x", "--quick"])
    # --quick is less audio (more epochs over it: the step count is what learning needs).
    assert full.clips_per_style * full.seconds > quick.clips_per_style * quick.seconds
    assert full.catalog_clips_per_style * full.catalog_seconds > quick.catalog_clips_per_style * quick.catalog_seconds
    assert full.catalog_seed != full.seed
    custom = demo.config_from_args(["--output", "x", "--quick", "--epochs", "3", "--styles", "jazz, rock"])
    assert custom.epochs == 3 and custom.styles == ("jazz", "rock")
    assert custom.clips_per_style == demo.QUICK["clips_per_style"]
    # The model is trained on the formats it labels; catalog tracks are longer than training clips.
    assert set(full.formats) == {"wav", "flac", "ogg", "mp3"} and full.catalog_seconds > full.seconds
    custom = demo.config_from_args(["--output", "x", "--formats", "flac, mp3", "--catalog-seconds", "12"])
    assert custom.formats == ("flac", "mp3") and custom.catalog_seconds == 12.0


def test_brace_set_of_formats():
    assert demo._brace(["wav"]) == "wav"
    assert demo._brace(["flac", "mp3", "wav"]) == "{flac,mp3,wav}"


def test_a_failing_step_is_named(tmp_path, capsys):
    # An unknown style makes the first step fail before anything heavy runs.
    code = demo.main(["--output", str(tmp_path / "d"), "--quick", "--styles", "polka"])
    assert code == 1
    err = capsys.readouterr().err
    assert "step 'synth' failed" in err and "polka" in err


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path, capsys):
    out = str(tmp_path / "demo")
    styles = ("ambient", "electronic", "jazz", "metal")
    # 48 clips of 6 s per style and 20 epochs keep the catalog accuracy well clear of the bar below
    # (0.81-0.94 in 3 runs; 24 clips gave 0.62-0.81, and 10 clips with 15 epochs gave 0.42 once).
    code = demo.main(["--output", out, "--quick", "--styles", ",".join(styles), "--clips-per-style", "48",
                      "--catalog-clips-per-style", "4", "--seconds", "6", "--catalog-seconds", "12",
                      "--epochs", "20", "--corrupt", "3", "--workers", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for n in range(1, 7):
        assert f"[{n}/6]" in printed  # every step announced itself
    assert "ACCURACY on the held-out catalog" in printed

    # Each step produced what the next one needs.
    with open(os.path.join(out, "collection", "manifest.csv")) as f:
        uris = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert {u.rsplit(".", 1)[-1] for u in uris} == {"wav", "flac", "ogg", "mp3"}  # trained on every format
    with open(os.path.join(out, "features", "metadata.json")) as f:
        md = json.load(f)
    assert md["inputs"]["featurized"] == 4 * 48 and md["inputs"]["failed"] == 0
    assert md["num_shards"]["train"] >= 1 and sorted(md["labels"]) == sorted(styles)
    with open(os.path.join(out, "model", "model.json")) as f:
        card = json.load(f)
    assert os.path.exists(os.path.join(out, "model", card["model_file"]))
    assert os.path.exists(os.path.join(out, "catalog", "corrupt.csv"))

    with open(os.path.join(out, "report", "summary.json")) as f:
        summary = json.load(f)
    steps = summary["steps"]
    assert steps["catalog"]["tracks"] == 16 and steps["catalog"]["corrupt"] == 3
    # inputs = labeled + dead letters: the broken files, and only they, are dead letters
    assert steps["label"]["inputs"] == 19
    assert steps["label"]["labeled"] == 16 and steps["label"]["dead_letters"] == 3
    assert summary["catalog_accuracy"]["unexpected"] == [] and summary["catalog_accuracy"]["missing"] == []
    assert os.path.isdir(summary["outputs"]["labels_partition"])

    # Report: valid PNGs and a labels file covering the catalog.
    for name in ("gallery.png", "training_curves.png", "confusion.png"):
        _assert_png(os.path.join(out, "report", name))
    with open(os.path.join(out, "report", "labels.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("track_id,") and len(lines) == 1 + 16

    # Learned, not guessed: chance is 1/4 on 16 held-out tracks; 8 of 16 right by luck has p < 0.03.
    accuracy = summary["catalog_accuracy"]["accuracy"]
    assert accuracy >= 0.5, accuracy
