"""Unit tests of the label job's plain pieces: model dirs, the model handler, aggregation, the store.

No Beam pipeline runs here; the end-to-end job is tested in test_label.py.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from transforms import label_store
from transforms.inference import (
    EMBEDDING,
    PROBABILITIES,
    GenreModelHandler,
    aggregate_track,
    load_segment_model,
    stack_segment_predictions,
    top_k,
)
from transforms.model_dir import ModelDirError, load_model_card, model_file_path, write_model_dir
from transforms.metadata import ModelCard, read_model_card, write_model_card
from transforms.spec import SpectrogramParams

PARAMS = SpectrogramParams(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16,
                           segment_seconds=0.5, segment_hop_seconds=0.5)
LABELS = ["blues", "jazz", "rock"]


def _keras_model(*, channel_axis: bool):
    import keras

    keras.utils.set_random_seed(1)
    if channel_axis:
        inp = x = keras.Input(PARAMS.mel_shape + (1,))
    else:
        inp = keras.Input(PARAMS.mel_shape)
        x = keras.layers.Reshape(PARAMS.mel_shape + (1,))(inp)
    x = keras.layers.Conv2D(3, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, activation="tanh", name="embedding")(x)
    out = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    model = _keras_model(channel_axis=False)
    write_model_dir(str(d), model=model, card=ModelCard(model_file="", model_version="", labels=LABELS,
                                                        spectrogram=PARAMS, input_shape=list(PARAMS.mel_shape),
                                                        embedding_layer="embedding"))
    return str(d)


def _model_path(model_dir: str) -> str:
    return model_file_path(model_dir, read_model_card(model_dir))


def _mels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-40, 10, (n,) + PARAMS.mel_shape).astype(np.float32)


# Model dirs ---------------------------------------------------------------------------------------
def test_load_model_card_reads_a_good_dir(model_dir):
    card = load_model_card(model_dir, embeddings=True)
    assert card.labels == LABELS and card.spectrogram == PARAMS


def test_model_dir_without_model_json_fails_clearly(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model_card(str(tmp_path))


def test_model_card_problems_are_named(tmp_path, model_dir):
    card = load_model_card(model_dir)
    bad = ModelCard(model_file="model.keras", model_version="v", labels=LABELS, spectrogram=PARAMS,
                    input_shape=[PARAMS.n_mels, PARAMS.n_frames + 1], embedding_layer=None)
    write_model_card(str(tmp_path), bad)
    with pytest.raises(ModelDirError, match="input_shape"):
        load_model_card(str(tmp_path))
    write_model_card(str(tmp_path), ModelCard(**{**bad.__dict__, "input_shape": list(card.input_shape)}))
    with pytest.raises(ModelDirError, match="embedding_layer"):
        load_model_card(str(tmp_path), embeddings=True)
    with pytest.raises(FileNotFoundError, match="model.keras"):  # the card is fine, the file is missing
        load_model_card(str(tmp_path))


# The model handler ----------------------------------------------------------------------------------
def test_handler_matches_keras_predict_and_embedding_layer(model_dir):
    import keras

    reference = keras.models.load_model(_model_path(model_dir))
    embed_ref = keras.Model(reference.inputs[0], reference.get_layer("embedding").output)
    handler = GenreModelHandler(_model_path(model_dir), embedding_layer="embedding",
                                max_batch_size=7)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 7
    model = handler.load_model()
    mels = _mels(5)
    results = list(handler.run_inference(list(mels), model))
    assert len(results) == 5 and all(r.example is None for r in results)
    probs = np.stack([r.inference[PROBABILITIES] for r in results])
    emb = np.stack([r.inference[EMBEDDING] for r in results])
    np.testing.assert_allclose(probs, reference.predict(mels, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb, embed_ref.predict(mels, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_model_with_channel_axis_gets_one(tmp_path):
    model = _keras_model(channel_axis=True)
    model.save(str(tmp_path / "m.keras"))
    loaded = load_segment_model(str(tmp_path / "m.keras"))
    mels = _mels(3, seed=2)
    out = loaded(mels)
    assert set(out) == {PROBABILITIES}
    np.testing.assert_allclose(out[PROBABILITIES], model.predict(mels[..., None], verbose=0), rtol=1e-5, atol=1e-6)


def test_unknown_embedding_layer_is_a_model_dir_error(model_dir):
    with pytest.raises(ModelDirError, match="not a layer"):
        load_segment_model(_model_path(model_dir), embedding_layer="nope")


# Aggregation ----------------------------------------------------------------------------------------
def test_aggregate_track_is_the_mean_of_segment_probabilities():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = rng.normal(size=(6, 4))
    out = aggregate_track(p, labels=LABELS, k=2, embeddings=emb)
    mean = [sum(row[j] for row in p.tolist()) / 6 for j in range(3)]  # plain-Python reference
    assert out["probabilities"] == pytest.approx(dict(zip(LABELS, mean)), rel=1e-12)
    best = max(range(3), key=lambda j: mean[j])
    assert out["genre"] == LABELS[best] and out["score"] == pytest.approx(mean[best])
    assert [t["genre"] for t in out["top_k"]] == [LABELS[j] for j in sorted(range(3), key=lambda j: -mean[j])[:2]]
    assert out["n_segments"] == 6
    assert out["embedding"] == pytest.approx(emb.mean(axis=0).tolist())
    assert sum(out["probabilities"].values()) == pytest.approx(1.0)


def test_top_k_clips_and_breaks_ties_by_label_order():
    assert top_k(np.array([0.25, 0.5, 0.25]), labels=LABELS, k=10) == [
        {"genre": "jazz", "score": 0.5}, {"genre": "blues", "score": 0.25}, {"genre": "rock", "score": 0.25}]


def test_aggregate_track_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        aggregate_track(np.zeros((0, 3)), labels=LABELS)
    with pytest.raises(ValueError):
        aggregate_track(np.ones((2, 2)) / 2, labels=LABELS)


def test_stack_segment_predictions_orders_by_segment_index():
    preds = [(2, {PROBABILITIES: np.array([0.0, 1.0])}), (0, {PROBABILITIES: np.array([1.0, 0.0])}),
             (1, {PROBABILITIES: np.array([0.5, 0.5])})]
    probs, emb, idx = stack_segment_predictions(preds)
    assert idx == [0, 1, 2] and emb is None
    np.testing.assert_array_equal(probs[:, 0], [1.0, 0.5, 0.0])


# The store --------------------------------------------------------------------------------------
def _rows(ids, *, version, fp="f"):
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return [{"track_id": t, "uri": f"/a/{t}", "fingerprint": fp, "content_hash": "c", "model_version": version,
             "labeled_at": at, "genre": "jazz", "score": 0.5, "top_k": [{"genre": "jazz", "score": 0.5}],
             "probabilities": {"jazz": 0.5, "rock": 0.5}, "n_segments": 1, "duration_seconds": 1.0}
            for t in ids]


def _write_part(path, rows, *, fmt="parquet"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    label_store.write_part(path, rows, fmt=fmt)


def test_readers_follow_the_commit_record(tmp_path):
    out = str(tmp_path)
    # committed run folder, plus a folder of a run that never committed (its rows must not be read)
    p1 = label_store.partition_dir(out, "2026-01-01")
    _write_part(os.path.join(p1, "run_id=20260101T000000Z-00000001", "part-00000-of-00001.parquet"),
                _rows(["a", "b"], version="v1") + _rows(["n"], version="v1", fp=""))
    _write_part(os.path.join(p1, "run_id=20260101T050000Z-00000002", "part-00000-of-00001.parquet"),
                _rows(["zombie"], version="v1"))
    label_store.commit_partition(p1, {"run_id": "20260101T000000Z-00000001",
                                      "files": {"rows": ["run_id=20260101T000000Z-00000001/part-00000-of-00001.parquet"]}})
    # a partition of the layout before run folders: parts beside a _run.json without "files"
    p2 = label_store.partition_dir(out, "2026-01-02")
    _write_part(os.path.join(p2, "part-00000-of-00001.jsonl"),
                _rows(["c"], version="v1", fp="g") + _rows(["d"], version="v0"), fmt="jsonl")
    label_store.commit_partition(p2, {"run_id": "old"})
    # a partition that was never committed
    _write_part(os.path.join(label_store.partition_dir(out, "2026-01-03"), "run_id=20260103T000000Z-00000003",
                             "part-00000-of-00001.parquet"), _rows(["e"], version="v1"))

    assert list(label_store.list_partitions(out)) == ["2026-01-01", "2026-01-02"]
    assert label_store.list_partitions(str(tmp_path / "none")) == {}
    history = list(label_store.committed_files(out, before="2026-01-02"))
    assert history == [("2026-01-01", os.path.join(p1, "run_id=20260101T000000Z-00000001",
                                                   "part-00000-of-00001.parquet"))]
    keys = [k for _, uri in label_store.committed_files(out) for k in label_store.labeled_keys(uri, model_version="v1")]
    assert sorted(keys) == [("a", "f"), ("b", "f"), ("c", "g")]  # other versions and unknown fingerprints left out
    table = label_store.read_labels(out)
    assert sorted(zip(table["run_date"].to_pylist(), table["track_id"].to_pylist())) == [
        ("2026-01-01", "a"), ("2026-01-01", "b"), ("2026-01-01", "n"), ("2026-01-02", "c"), ("2026-01-02", "d")]
    assert label_store.count_rows(p1) == 3 and label_store.count_rows(p2) == 2
    assert label_store.count_rows(label_store.partition_dir(out, "2026-01-03")) == 0
    # once a new run commits into the old-layout partition, the old files go
    os.makedirs(os.path.join(out, label_store.LEGACY_STAGING_DIR, "run_date=2026-01-02", "x"))
    removed = label_store.remove_legacy_files(out, p2)
    assert sorted(os.path.basename(r) for r in removed) == ["_staging", "part-00000-of-00001.jsonl"]


def test_empty_part_files_are_readable(tmp_path):
    for fmt in label_store.FORMATS:
        path = str(tmp_path / label_store.part_name(0, 1, fmt=fmt))
        assert label_store.write_part(path, [], fmt=fmt) == 0
        assert label_store.read_index_columns(path).num_rows == 0
    table = pq.read_table(str(tmp_path / "part-00000-of-00001.parquet"))
    assert table.schema.equals(label_store.label_schema())


def test_labels_json_lines_round_trip():
    row = _rows(["a"], version="v1")[0]
    back = json.loads(label_store.row_to_json(row))
    assert back["labeled_at"] == "2026-01-01T00:00:00.000000Z" and back["probabilities"] == {"jazz": 0.5, "rock": 0.5}


def test_parse_run_date():
    assert label_store.parse_run_date("2026-11-29") == "2026-11-29"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        label_store.parse_run_date("29/11/2026")


def test_same_probabilities_as_beams_tf_model_handler(model_dir):
    """Beam's TFModelHandlerNumpy (needs tensorflow-hub, a test extra) is the independent reference."""
    pytest.importorskip("tensorflow_hub")
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    path = _model_path(model_dir)
    reference = TFModelHandlerNumpy(path)
    ours = GenreModelHandler(path)
    mels = list(_mels(4, seed=5))
    expected = np.stack([np.asarray(r.inference) for r in reference.run_inference(mels, reference.load_model())])
    got = np.stack([r.inference[PROBABILITIES] for r in ours.run_inference(mels, ours.load_model())])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
