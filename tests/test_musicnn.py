"""musicnn backbone: parity with the original TF1 graph, the weights cache, the preset, and the
``train --backbone`` recipe from featurize to the label job.

The reference for parity is the graph the authors shipped (``model.meta`` in the cache, a copy of
the wheel's ``.meta``), imported with ``tf.compat.v1`` and run in a ``Session`` with its variables
read from the checkpoint: independent of our layer code and of our name mapping.  The weights come
from ``make install`` (``python -m training.musicnn_weights``); without them these tests fail with
the command to run, they are not skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from pipelines.options import add_spectrogram_args, params_from_args
from training import musicnn, musicnn_weights
from transforms.spec import PRESETS, ParameterMismatchError, SpectrogramParams

MUSICNN = PRESETS["musicnn"]


def _patches(n: int, seed: int = 0) -> np.ndarray:
    """``n`` log-mel patches ``(n, 96, 187)`` of generated music-like audio, through our front end."""
    from transforms.spectrogram import log_mel, mel_filter

    rng = np.random.default_rng(seed)
    sr, length = MUSICNN.sample_rate, MUSICNN.segment_samples
    t = np.arange(length) / sr
    out = []
    for i in range(n):
        f0 = 110.0 * 2 ** (i / 3)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        beat = (np.sin(2 * np.pi * 2.0 * t) > 0.95) * rng.standard_normal(length)
        out.append((0.2 * tone + 0.3 * beat + 0.01 * rng.standard_normal(length)).astype(np.float32))
    return log_mel(np.stack(out), mel=mel_filter(MUSICNN))


def _tf1_reference(prefix: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    """Run the shipped TF1 graph on ``(n, 187, 96)`` patches with ``is_training=False``."""
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(pathlib.Path(prefix + ".meta").read_bytes())
    # Tensor names in the authors' training graph (musicnn-training: `with tf.name_scope('model')`).
    targets = {
        "logits": "model/dense_1/BiasAdd",
        "penultimate": "model/batch_normalization_10/batchnorm/add_1",
        "max_pool": "model/Max",
        "mean_pool": "model/moments/Squeeze",
    }
    # Only the forward graph (its gradient ops no longer import); variables become constants.
    forward = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, list(targets.values()))
    reader = tf.train.load_checkpoint(prefix)
    graph_def = tf.compat.v1.GraphDef()
    for node in forward.node:
        if node.op == "VariableV2":
            const = node_def_pb2.NodeDef(name=node.name, op="Const")
            const.attr["dtype"].type = node.attr["dtype"].type
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(reader.get_tensor(node.name)))
            graph_def.node.append(const)
        else:
            copy = graph_def.node.add()
            copy.CopyFrom(node)
            copy.attr.pop("_output_shapes", None)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        out = sess.run(
            {k: v + ":0" for k, v in targets.items()},
            {"model/Placeholder:0": patches, "model/Placeholder_2:0": False},
        )
    return {
        "tags": 1.0 / (1.0 + np.exp(-out["logits"].astype(np.float64))),
        "penultimate": out["penultimate"],
        "max_pool": out["max_pool"].reshape(len(patches), -1),
        "mean_pool": out["mean_pool"].reshape(len(patches), -1),
    }


@pytest.mark.parametrize("name", sorted(musicnn.BACKBONES))
def test_keras_musicnn_matches_the_original_tf1_graph(name):
    backbone = musicnn.BACKBONES[name]
    prefix = musicnn_weights.checkpoint_prefix(backbone.checkpoint)
    x = _patches(3)
    assert x.shape == (3, musicnn.N_MELS, musicnn.N_FRAMES)
    ref = _tf1_reference(prefix, np.swapaxes(x, 1, 2))  # the original takes (frames, mels)
    model = musicnn.pretrained(name)
    tags, penultimate, max_pool, mean_pool = (np.asarray(t) for t in model(x, training=False))
    np.testing.assert_allclose(tags, ref["tags"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(penultimate, ref["penultimate"], atol=1e-5, rtol=0)
    for ours, theirs in ((max_pool, ref["max_pool"]), (mean_pool, ref["mean_pool"])):
        # Sums over 561 channels x 7 taps reach ~30: compare relative to the largest value.
        np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max(), rtol=0)
    assert tags.std() > 1e-3 and penultimate.std() > 1e-2  # not a degenerate input


def test_missing_weights_name_the_install_command(tmp_path, monkeypatch, capsys):
    import trainutil
    from training import train

    monkeypatch.setenv("GENREFLOW_CACHE", str(tmp_path / "empty"))
    with pytest.raises(musicnn_weights.WeightsMissingError) as info:
        musicnn_weights.checkpoint_prefix("MSD_musicnn")
    message = str(info.value)
    assert "\n" not in message and "make install" in message and "python -m training.musicnn_weights" in message
    trainutil.write_dataset(str(tmp_path / "data"), params=MUSICNN, tracks={"train": 1}, segments_per_track=1)
    rc = train.main(["--data", str(tmp_path / "data"), "--model-dir", str(tmp_path / "model"),
                     "--backbone", "musicnn-mtt", "--verbose", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "install them with: make install" in err
    assert not (tmp_path / "model").exists()


def test_extract_checks_the_wheel_hash(tmp_path):
    fake = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("musicnn/MSD_musicnn/.index", b"not a checkpoint")
    with pytest.raises(ValueError, match="SHA-256"):
        musicnn_weights.extract(fake, root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cache_holds_the_checkpoints_and_the_licence():
    root = musicnn_weights.cache_dir()
    assert "Permission to use, copy, modify" in (root / "LICENSE.md").read_text()  # ISC
    for name in musicnn_weights.CHECKPOINTS:
        prefix = musicnn_weights.checkpoint_prefix(name)
        assert os.path.isfile(prefix + ".index") and os.path.isfile(prefix + ".meta")
        # the authors' own record of the front end agrees with the preset
        rep = json.loads((root / name / "config.json").read_text())["audio_rep"]
        assert (rep["resample_sr"], rep["n_fft"], rep["hop"], rep["n_mels"]) == (
            MUSICNN.sample_rate, MUSICNN.n_fft, MUSICNN.hop_length, MUSICNN.n_mels)


def _parse(*argv: str) -> SpectrogramParams:
    parser = argparse.ArgumentParser()
    add_spectrogram_args(parser)
    return params_from_args(parser.parse_args(list(argv)))


def test_preset_musicnn_parameters():
    p = _parse("--preset", "musicnn")
    assert p == MUSICNN
    assert (p.sample_rate, p.n_fft, p.hop_length, p.n_mels, p.log) == (16000, 512, 256, 96, "logc")
    # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1, as musicnn computes it
    assert p.mel_shape == (96, 187)
    assert SpectrogramParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # explicit options override the preset, which keeps its own hop (no overlap) otherwise
    assert _parse("--preset", "musicnn", "--segment-hop-seconds", "1.5").segment_hop_seconds == 1.5
    assert _parse("--preset", "musicnn", "--segment-seconds", "5").segment_hop_seconds == 5.0
    # no flag: the dataclass defaults with segments overlapping by half (the default recipe)
    assert _parse() == SpectrogramParams(segment_hop_seconds=1.5)
    assert _parse("--segment-seconds", "5").segment_hop_seconds == 2.5
    assert _parse("--segment-seconds", "5", "--segment-hop-seconds", "5").segment_hop_seconds == 5.0


def test_logc_in_float32_is_finite_where_float16_overflows():
    from transforms.spectrogram import power_to_log

    power = np.array([[[0.0, 1e-4, 7.0, 3e4]]], np.float32)  # 7 * 1e4 > float16 max (65504)
    out = power_to_log(power, params=MUSICNN)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, np.log10(1.0 + 1e4 * power.astype(np.float64)), rtol=1e-6)


def test_backbone_refuses_data_of_another_front_end(tmp_path, capsys):
    import trainutil
    from training import backbone, train

    trainutil.write_dataset(str(tmp_path / "data"), tracks={"train": 1, "test": 1}, segments_per_track=1)
    with pytest.raises(ParameterMismatchError, match="--preset musicnn"):
        backbone.check_preset(trainutil.TINY_PARAMS, backbone="musicnn-msd")
    with pytest.raises(ParameterMismatchError, match="n_mels: 96 != 128"):
        backbone.check_preset(dataclasses.replace(MUSICNN, n_mels=128), backbone="musicnn-msd")
    # overlapping segments are the same front end
    backbone.check_preset(dataclasses.replace(MUSICNN, segment_hop_seconds=1.488), backbone="musicnn-msd")
    rc = train.main(["--data", str(tmp_path / "data"), "--model-dir", str(tmp_path / "model"),
                     "--backbone", "musicnn-msd", "--verbose", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "genreflow featurize --preset musicnn" in err and "sample_rate: 16000 != 8000" in err
    assert not (tmp_path / "model").exists()  # refused before any work


LOAD_WITHOUT_TRAINING = """
import sys, numpy as np, keras
model_file, x_file, out_file = sys.argv[1:]
model = keras.models.load_model(model_file, safe_mode=True)
np.save(out_file, np.asarray(model(np.load(x_file), training=False)))
assert not any(m == "training" or m.startswith("training.") for m in sys.modules), "imported training"
assert not any(m == "musicnn" or m.startswith("musicnn.") for m in sys.modules), "imported musicnn"
"""


@pytest.mark.slow
def test_backbone_recipe_trains_exports_and_labels(tmp_path):
    """featurize --preset musicnn -> train --backbone musicnn-msd -> load elsewhere -> label job."""
    import soundfile as sf

    from pipelines import featurize, label
    from training import export, train
    from transforms import label_store
    from transforms.beam_audio import featurize_track
    from transforms.metadata import read_metadata, read_model_card
    from transforms.sources import TrackRef, refs_from_pattern

    in_process = ["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"]
    sr, rng = MUSICNN.sample_rate, np.random.default_rng(1)
    rows = ["uri,label,split"]
    t = np.arange(int(3.2 * sr)) / sr
    for genre in ("drone", "noise"):
        for i, split in enumerate(("train", "train", "train", "test")):
            if genre == "drone":  # a low harmonic tone
                y = sum(0.2 / k * np.sin(2 * np.pi * 110.0 * (1 + 0.02 * i) * k * t) for k in range(1, 4))
            else:  # broadband noise
                y = 0.2 * rng.standard_normal(t.size)
            path = tmp_path / "audio" / genre / f"{genre}.{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, y.astype(np.float32), sr)
            rows.append(f"{path},{genre},{split}")
    (tmp_path / "tracks.csv").write_text("\n".join(rows) + "\n")
    data, model_dir = str(tmp_path / "data"), str(tmp_path / "model")
    featurize.run(["--manifest", str(tmp_path / "tracks.csv"), "--output", data, "--preset", "musicnn", *in_process])
    assert read_metadata(data).spectrogram == MUSICNN

    # the head on the frozen backbone, then one epoch of --fine-tune (which runs every code path)
    summary = train.run(["--data", data, "--model-dir", model_dir, "--backbone", "musicnn-msd",
                         "--epochs", "30", "--fine-tune", "--fine-tune-epochs", "1", "--verbose", "0"])
    card = read_model_card(model_dir)
    assert card.spectrogram == MUSICNN and card.input_shape == [96, 187]
    assert card.extra["backbone"] == "musicnn-msd" and card.extra["fine_tuned"] is True
    assert card.inference_batch_size == 32  # the label job's default --max-batch-size for it
    assert summary["metrics"]["track_accuracy"] == 1.0  # a tone against noise

    x = _patches(2)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TRAINING, os.path.join(model_dir, card.model_file),
                    str(tmp_path / "x.npy"), str(tmp_path / "out.npy")], cwd=str(tmp_path), check=True, timeout=300)
    loaded = export.load_model_dir(model_dir).model
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), export.predict_proba(loaded, x), rtol=1e-5, atol=1e-6)

    out = tmp_path / "labels"
    label.run(["--input", f"{tmp_path / 'audio'}/**/*.wav", "--model-dir", model_dir, "--output", str(out),
               "--run-date", "2026-12-01", "--min-batch-size", "2", "--max-batch-size", "8", *in_process])
    got = {r["track_id"]: r for r in label_store.read_labels(str(out)).to_pylist()}
    refs = [r for r in refs_from_pattern(f"{tmp_path / 'audio'}/**/*.wav") if isinstance(r, TrackRef)]
    assert sorted(got) == sorted(r.track_id for r in refs)
    for ref in refs:
        p = export.predict_proba(loaded, featurize_track(ref, params=MUSICNN).mels).astype(np.float64).mean(axis=0)
        assert dict(got[ref.track_id]["probabilities"]) == pytest.approx(dict(zip(card.labels, p)), abs=1e-5)
        assert got[ref.track_id]["genre"] == ref.label


def test_backbone_features_are_cached_per_dataset_and_split(tmp_path, monkeypatch):
    import keras

    import trainutil
    from training import backbone
    from transforms.metadata import read_metadata

    monkeypatch.setenv("GENREFLOW_CACHE", str(tmp_path / "cache"))
    data = str(tmp_path / "data")
    trainutil.write_dataset(data, tracks={"train": 2, "test": 1}, segments_per_track=2)
    metadata = read_metadata(data)
    inputs = keras.Input(shape=trainutil.TINY_PARAMS.mel_shape)
    features = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(inputs))  # (n, n_frames)
    first = backbone.cached_segment_features(features, data, metadata=metadata, split="train", backbone="musicnn-msd")
    direct = backbone.segment_features(features, data, metadata=metadata, split="train")
    np.testing.assert_array_equal(first[0], direct[0])
    np.testing.assert_array_equal(first[1], direct[1])
    path = backbone.feature_cache_path(data, split="train", backbone="musicnn-msd")
    assert path.is_file() and path.parent == tmp_path / "cache" / "backbone-features"

    class Refuses:  # a second read must not run the backbone
        outputs = features.outputs

        def __call__(self, *args, **kwargs):
            raise AssertionError("backbone ran although the features were cached")

    again = backbone.cached_segment_features(Refuses(), data, metadata=metadata, split="train", backbone="musicnn-msd")
    np.testing.assert_array_equal(again[0], first[0])
    # another split, backbone or dataset is another entry
    assert len({path, backbone.feature_cache_path(data, split="test", backbone="musicnn-msd"),
                backbone.feature_cache_path(data, split="train", backbone="musicnn-mtt")}) == 3
