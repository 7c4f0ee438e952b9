"""The trainer end to end on tiny generated data: learning, export, evaluation, resume after a kill."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trainutil
from training import evaluate, export, train
from training.model import ARCHITECTURES, DEFAULT_ARCHITECTURE, EMBEDDING_LAYER, build_model, make_normalizer
from transforms.metadata import read_metadata, read_model_card
from transforms.spec import ParameterMismatchError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--freq-mask", "3", "--time-mask", "3", "--batch-size", "16", "--warmup-epochs", "1", "--verbose", "0"]


def _sha16(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    trainutil.write_dataset(d, fmt="tfrecord", seed=1)
    return d


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("model"))
    summary = train.run(["--data", dataset, "--model-dir", model_dir, "--epochs", "8", "--learning-rate", "0.005", *TINY])
    return model_dir, summary


@pytest.mark.slow
def test_training_learns_and_writes_a_complete_model_dir(dataset, trained):
    model_dir, summary = trained
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert metrics["split"] == "test"
    assert metrics["track"]["n"] == 9  # 3 test tracks x 3 labels
    assert metrics["track"]["balanced_accuracy"] >= 0.8  # chance is 1/3
    assert metrics["segment"]["accuracy"] >= 0.7
    card = read_model_card(model_dir)
    for name in (card.model_file, "model.json", "history.csv", "training_curves.png",
                 "confusion_track.png", "confusion_segment.json"):
        assert os.path.getsize(os.path.join(model_dir, name)) > 0, name
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # removed after a finished run
    assert os.listdir(os.path.join(model_dir, "logs"))  # TensorBoard

    md = read_metadata(dataset)
    assert card.labels == md.labels
    assert card.spectrogram == md.spectrogram
    assert card.spectrogram.to_dict() == json.load(open(os.path.join(dataset, "metadata.json")))["spectrogram"]
    assert card.input_shape == list(md.spectrogram.mel_shape)
    assert card.embedding_layer == EMBEDDING_LAYER
    assert card.data_fingerprint == _sha16(os.path.join(dataset, "metadata.json"))
    assert card.model_sha256[:16] == _sha16(os.path.join(model_dir, card.model_file))
    assert card.model_file == f"model-{card.model_sha256[:16]}.keras"
    assert card.model_version == summary["model_version"]
    assert card.metrics["track_balanced_accuracy"] == metrics["track"]["balanced_accuracy"]
    assert summary["epochs_run"] == list(range(8))


@pytest.mark.slow
def test_evaluate_cli_reproduces_training_metrics(dataset, trained, tmp_path):
    model_dir, _ = trained
    assert evaluate.main(["--data", dataset, "--model-dir", model_dir, "--output", str(tmp_path)]) == 0
    again = json.load(open(tmp_path / "metrics.json"))
    first = json.load(open(os.path.join(model_dir, "metrics.json")))
    for level in ("segment", "track"):
        assert again[level]["confusion_matrix"] == first[level]["confusion_matrix"]
    assert (tmp_path / "confusion_track.png").stat().st_size > 0


@pytest.mark.slow
def test_mismatched_spectrogram_parameters_are_rejected(trained, tmp_path):
    model_dir, _ = trained
    other = trainutil.TINY_PARAMS.__class__(**{**trainutil.TINY_PARAMS.to_dict(), "top_db": 60.0})
    trainutil.write_dataset(str(tmp_path), params=other, tracks={"test": 1})
    with pytest.raises(ParameterMismatchError, match="top_db: 80.0 != 60.0"):
        evaluate.evaluate_model_dir(model_dir, str(tmp_path), split="test")
    assert evaluate.main(["--data", str(tmp_path), "--model-dir", model_dir]) == 2


LOAD_SCRIPT = """
import sys, numpy as np, keras
path, x_file, out_file, beam = sys.argv[1:]
x = np.load(x_file)
if beam == "beam":
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy
    handler = TFModelHandlerNumpy(model_uri=path)
    out = np.stack([np.asarray(r.inference) for r in handler.run_inference(list(x), handler.load_model())])
else:
    out = np.asarray(keras.models.load_model(path)(x, training=False))
assert not any(m == "training" or m.startswith("training.") for m in sys.modules), "imported training"
np.save(out_file, out)
"""


def _load_elsewhere(model_dir, tmp_path, how):
    """Predict in a fresh process that never imports ``training`` (the label job's view)."""
    rng = np.random.default_rng(0)
    x = rng.normal(-40, 10, size=(5, *trainutil.TINY_PARAMS.mel_shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, os.path.join(model_dir, read_model_card(model_dir).model_file),
         str(tmp_path / "x.npy"), str(tmp_path / "out.npy"), how],
        cwd=str(tmp_path), check=True, timeout=300,
    )
    ours = export.predict_proba(export.load_model_dir(model_dir).model, x)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ours, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_exported_model_loads_with_plain_keras(trained, tmp_path):
    _load_elsewhere(trained[0], tmp_path, "keras")


@pytest.mark.slow
def test_exported_model_loads_with_beam_tf_model_handler(trained, tmp_path):
    # Beam's TFModelHandlerNumpy imports tensorflow_hub: the `test` extra installs it, so this runs.
    _load_elsewhere(trained[0], tmp_path, "beam")


def test_export_load_round_trip_gives_identical_predictions(dataset, tmp_path):
    md = read_metadata(dataset)
    rng = np.random.default_rng(3)
    x = rng.normal(-40, 10, size=(7, *md.spectrogram.mel_shape)).astype(np.float32)
    norm = make_normalizer()
    norm.adapt(x)
    model = build_model(input_shape=md.spectrogram.mel_shape, n_classes=len(md.labels), normalizer=norm)
    before = export.predict_proba(model, x)
    card = export.save_model_dir(str(tmp_path), model=model, metadata=md, data_dir=dataset, embedding_layer=EMBEDDING_LAYER)
    loaded = export.load_model_dir(str(tmp_path))
    np.testing.assert_array_equal(export.predict_proba(loaded.model, x), before)
    assert loaded.card.to_dict() == card.to_dict()
    emb = export.embedding_model(loaded)(x)
    assert emb.shape == (7, ARCHITECTURES[DEFAULT_ARCHITECTURE].embedding)
    # normalisation is per mel band, learned from the data and saved in the model
    mean = np.asarray(loaded.model.get_layer("band_normalization").mean).reshape(-1)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-4)


@pytest.mark.parametrize("arch", ["temporal", "small", "hybrid", "wide"])
def test_every_architecture_maps_segments_to_probabilities(arch):
    model = build_model(input_shape=(16, 16), n_classes=3, arch=arch)
    probs = np.asarray(model(np.zeros((2, 16, 16), np.float32)))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer(EMBEDDING_LAYER).output.shape[-1] > 0


def test_stats_pooling_and_band_stats_and_plain_keras_load(tmp_path):
    import dataclasses

    import keras

    arch = dataclasses.replace(ARCHITECTURES["temporal"], pooling="stats", band_stats=True)
    model = build_model(input_shape=(16, 24), n_classes=3, arch=arch)
    x = np.random.default_rng(5).normal(size=(2, 16, 24)).astype(np.float32)
    names = ("band_normalization", "block2_pool", "pool")
    normed, feats, pooled = (np.asarray(t) for t in keras.Model(model.input, [model.get_layer(n).output for n in names])(x))
    # pooled = [mean, std] over time of the last block's channels, then of the normalised mel bands
    want = np.concatenate([feats.mean(axis=1), feats.std(axis=1), normed.mean(axis=2), normed.std(axis=2)], axis=1)
    np.testing.assert_allclose(pooled, want, rtol=1e-3, atol=2e-3)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)


def test_check_data_compatible_maps_labels_and_rejects_unknown(dataset):
    md = read_metadata(dataset)
    card = export.ModelCard(model_file="m.keras", model_version="x", labels=["blues", "disco", "jazz", "rock"],
                            spectrogram=md.spectrogram, input_shape=list(md.spectrogram.mel_shape))
    np.testing.assert_array_equal(export.check_data_compatible(card, md), [0, 2, 3])
    card.labels = ["blues", "jazz"]
    with pytest.raises(ParameterMismatchError, match="rock"):
        export.check_data_compatible(card, md)


KILL_SCRIPT = """
import os, sys, keras
from training import train

class Kill(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == {kill_after}:
            os._exit(17)

train.train(train.parse_args(sys.argv[1:]), callbacks=[Kill()])
"""


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch(dataset, tmp_path, capsys):
    model_dir = str(tmp_path / "model")
    args = ["--data", dataset, "--model-dir", model_dir, "--epochs", "4", *TINY]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT.format(kill_after=1), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == 17, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(model_dir, "model.json"))
    assert os.path.exists(os.path.join(model_dir, "backup"))

    # resuming that backup on other data is refused before any work (issue 12, item 9)
    other = str(tmp_path / "other-data")
    trainutil.write_dataset(other, fmt="tfrecord", seed=2)
    backup_files = sorted(os.listdir(os.path.join(model_dir, "backup")))
    assert train.main(["--data", other, "--model-dir", model_dir, "--epochs", "4", *TINY]) == 2
    assert "holds an unfinished checkpoint of a run on data" in capsys.readouterr().err
    assert sorted(os.listdir(os.path.join(model_dir, "backup"))) == backup_files

    summary = train.run(args)
    assert summary["epochs_run"] == [2, 3]
    with open(os.path.join(model_dir, "history.csv")) as f:
        epochs = [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3]
    assert read_model_card(model_dir).extra["epochs_completed"] == 4


# Option values that cannot make a useful run (issue 12, items 9 and 10) ---------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--epochs", "-1"], "--epochs must be >= 1, got -1"),
        (["--learning-rate", "0"], "--learning-rate must be > 0"),
        (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
        (["--mixup", "nan"], "--mixup must be >= 0, got nan"),
    ],
)
def test_useless_values_exit_2_with_one_line(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        train.parse_args(["--data", str(tmp_path), "--model-dir", str(tmp_path / "m"), *extra])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("genreflow train: error: ") and message in last
    assert not (tmp_path / "m").exists()


def test_model_dir_onto_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        train.parse_args(["--data", str(tmp_path), "--model-dir", str(tmp_path / "model")])
    assert exc.value.code == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_backup_without_a_marker_is_not_resumed(dataset, tmp_path):
    """A checkpoint whose data is unknown (written before the marker existed) is not trusted."""
    backup = tmp_path / "model" / "backup"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"weights of some other run")
    cfg = train.parse_args(["--data", dataset, "--model-dir", str(tmp_path / "model")])
    with pytest.raises(ValueError, match="holds an unfinished checkpoint of an unknown run"):
        train.check_resume(cfg, data_fingerprint=export.dataset_version(dataset))
