"""The model dir is written atomically and verified before any work (issue 12, items 5 and 9).

Exports go through :func:`transforms.model_dir.write_model_dir` (the trainer's writer, which
tests/tinymodel.py uses too); the label job checks a model dir with
:func:`transforms.model_dir.load_model_card` before it reads any audio.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from tinymodel import save_model_dir, tiny_cnn
from transforms import model_dir
from transforms.model_dir import ModelDirError, load_model_card, model_digest, new_model_card, write_model_dir
from transforms.metadata import ModelCard, read_model_card, write_model_card
from transforms.spec import SpectrogramParams

PARAMS = SpectrogramParams(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, segment_seconds=0.5)
LABELS = ["blues", "jazz", "rock"]


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def model():
    import keras

    keras.utils.set_random_seed(3)
    return tiny_cnn(PARAMS, n_labels=len(LABELS))


def _card() -> ModelCard:
    return new_model_card(labels=LABELS, spectrogram=PARAMS, embedding_layer="embedding")


# Item 5: atomic, content-addressed, verified, stable version ---------------------------------------
def test_export_records_the_file_sha256_and_label_verifies_it(tmp_path, model):
    card = save_model_dir(model, str(tmp_path), labels=LABELS, params=PARAMS)  # tests' writer = trainer's
    path = tmp_path / card.model_file
    assert card.model_sha256 == _sha256(path) and card.model_file == f"model-{card.model_sha256[:16]}.keras"
    assert json.loads((tmp_path / "model.json").read_text())["model_sha256"] == card.model_sha256
    assert load_model_card(str(tmp_path)).model_version == card.model_version


def test_identical_weights_keep_their_model_version(tmp_path, model):
    first = write_model_dir(str(tmp_path / "a"), model=model, card=_card())
    again = write_model_dir(str(tmp_path / "a"), model=model, card=_card())  # re-export, same dir
    elsewhere = write_model_dir(str(tmp_path / "b"), model=model, card=_card())
    assert first.model_version == again.model_version == elsewhere.model_version
    # the .keras zip embeds its save date: a byte hash would not have been stable
    assert load_model_card(str(tmp_path / "a")).model_sha256 == again.model_sha256
    weights = model.get_weights()
    weights[-1] = weights[-1] + np.float32(1e-3)
    model.set_weights(weights)
    assert write_model_dir(str(tmp_path / "c"), model=model, card=_card()).model_version != first.model_version
    assert model_digest(model, labels=LABELS[::-1], spectrogram=PARAMS) != model_digest(
        model, labels=LABELS, spectrogram=PARAMS)


def test_a_killed_export_leaves_the_previous_model_dir_usable(tmp_path, model, monkeypatch):
    """A kill while the new file is uploaded (half a file) or before model.json is written: the
    reader still sees the old model.json and the old, intact file it names."""
    old = write_model_dir(str(tmp_path), model=model, card=_card())
    weights = [w * 0.5 for w in model.get_weights()]
    model.set_weights(weights)

    import fsspec.implementations.local as local_fs

    real_put = local_fs.LocalFileSystem.put_file

    def half_then_die(self, lpath, rpath, **kwargs):
        with open(lpath, "rb") as src, open(rpath, "wb") as dst:
            dst.write(src.read()[:1000])
        raise KeyboardInterrupt("killed during the upload")

    monkeypatch.setattr(local_fs.LocalFileSystem, "put_file", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_model_dir(str(tmp_path), model=model, card=_card())
    monkeypatch.setattr(local_fs.LocalFileSystem, "put_file", real_put)
    assert load_model_card(str(tmp_path)).model_version == old.model_version

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed before model.json")

    monkeypatch.setattr(model_dir, "write_model_card", die)
    with pytest.raises(KeyboardInterrupt):
        write_model_dir(str(tmp_path), model=model, card=_card())
    monkeypatch.undo()
    assert load_model_card(str(tmp_path)).model_version == old.model_version

    new = write_model_dir(str(tmp_path), model=model, card=_card())
    assert new.model_version != old.model_version
    assert load_model_card(str(tmp_path)).model_version == new.model_version
    # the new file and the previous one (a label job may still be loading it) stay; no partial files
    kept = sorted(p for p in os.listdir(tmp_path) if p.endswith(".keras") or p.endswith(".tmp"))
    assert kept == sorted([old.model_file, new.model_file])


def test_a_swapped_model_file_is_refused_with_one_line(tmp_path, model):
    card = write_model_dir(str(tmp_path / "a"), model=model, card=_card())
    other = write_model_dir(str(tmp_path / "b"), model=tiny_cnn(PARAMS, n_labels=len(LABELS)), card=_card())
    (tmp_path / "a" / card.model_file).write_bytes((tmp_path / "b" / other.model_file).read_bytes())
    with pytest.raises(ModelDirError, match="does not match model.json") as info:
        load_model_card(str(tmp_path / "a"))
    assert "\n" not in str(info.value)


# Item 9: bad model dirs, before any work -------------------------------------------------------------
def _hand_made(tmp_path, keras_model, **card_fields) -> str:
    """A model dir whose model.json is written by hand (with the file's true SHA-256)."""
    d = tmp_path / "hand"
    d.mkdir(exist_ok=True)
    keras_model.save(str(d / "model.keras"))
    fields = dict(model_file="model.keras", model_version="v", labels=LABELS, spectrogram=PARAMS,
                  input_shape=list(PARAMS.mel_shape), embedding_layer="embedding")
    fields.update(card_fields)
    write_model_card(str(d), ModelCard(**fields, model_sha256=_sha256(d / fields["model_file"])))
    return str(d)


def test_model_with_more_outputs_than_labels_is_refused(tmp_path):
    d = _hand_made(tmp_path, tiny_cnn(PARAMS, n_labels=15), labels=[f"g{i}" for i in range(10)])
    with pytest.raises(ModelDirError, match="outputs 15 scores, model.json has 10 labels"):
        load_model_card(d)


def test_model_whose_real_input_shape_differs_from_model_json_is_refused(tmp_path):
    other = SpectrogramParams(sample_rate=8000, n_fft=256, hop_length=128, n_mels=24, segment_seconds=0.5)
    d = _hand_made(tmp_path, tiny_cnn(other, n_labels=len(LABELS)))
    with pytest.raises(ModelDirError, match=r"takes inputs of shape \[24, 32\], model.json says input_shape \[16, 32\]"):
        load_model_card(d)


def test_truncated_model_file_with_a_matching_hash_is_refused(tmp_path, model):
    d = _hand_made(tmp_path, model)
    path = os.path.join(d, "model.keras")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    card = read_model_card(d)
    write_model_card(d, ModelCard(**{**card.__dict__, "model_sha256": _sha256(path)}))
    with pytest.raises(ModelDirError, match="does not load as a Keras model") as info:
        load_model_card(d)
    assert "\n" not in str(info.value)


def test_card_without_a_hash_is_refused(tmp_path, model):
    d = _hand_made(tmp_path, model)
    card = read_model_card(d)
    write_model_card(d, ModelCard(**{**card.__dict__, "model_sha256": ""}))
    with pytest.raises(ModelDirError, match="no model_sha256"):
        load_model_card(d)
    assert load_model_card(d, verify=False).labels == LABELS


@pytest.mark.parametrize(
    "content, message",
    [("{}", "lacks model_file, model_version, labels, spectrogram, input_shape"),
     ("[1, 2]", "holds a list, not a JSON object"),
     ("{not json", "is not valid JSON"),
     (None, "is a file, not a model dir")],
)
def test_unusable_model_dirs_are_one_line_errors(tmp_path, content, message):
    if content is None:
        target = tmp_path / "model_dir"
        target.write_text("a file")
    else:
        target = tmp_path
        (tmp_path / "model.json").write_text(content)
    with pytest.raises(ModelDirError) as info:
        load_model_card(str(target))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_label_cli_refuses_a_mismatched_model_before_any_work(tmp_path, capsys, write_audio):
    from pipelines import label

    write_audio(tmp_path / "in" / "rock" / "a.wav", seconds=1.0, sample_rate=8000)
    d = _hand_made(tmp_path, tiny_cnn(PARAMS, n_labels=15), labels=[f"g{i}" for i in range(10)])
    out = tmp_path / "out"
    status = label.main(["--input", str(tmp_path / "in" / "**" / "*.wav"), "--model-dir", d,
                         "--output", str(out), "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genreflow label: error: ") and "outputs 15 scores" in err[0]
    assert not out.exists()


def test_model_dir_on_an_object_store_path(model):
    """fsspec paths (memory:// here, as gs:// and s3://): written, verified and loaded through a local copy."""
    import fsspec

    root = "memory://genreflow-tests/model-dir"
    card = write_model_dir(root, model=model, card=_card())
    assert load_model_card(root).model_sha256 == card.model_sha256
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/genreflow-tests/model-dir", detail=False))
    assert names == sorted([card.model_file, "model.json"])
    fs.rm("/genreflow-tests", recursive=True)


def test_the_label_job_reads_model_dirs_without_importing_training():
    """The label job (and what it reads model dirs and shards with) never imports ``training``."""
    import subprocess
    import sys

    code = ("import sys, pipelines.label, transforms.model_dir, transforms.inference, transforms.shard_reader; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'training'); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
