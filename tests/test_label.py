"""End-to-end tests of the label job on generated audio, with a tiny model trained here.

The model is trained in the module fixture on small spectrograms (16 mel bands, 0.5 s segments at
8 kHz) so that every run takes seconds; it does not use ``training/``.  Pipelines run on the
in-process FnApiRunner.  Expected values come from calling the Keras model directly on
``featurize_track`` output, not from the job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
import soundfile as sf

from pipelines import label
from tinymodel import save_model_dir, tiny_cnn
from transforms import label_store
from transforms.beam_audio import featurize_track
from transforms.inference import GenreModelHandler
from transforms.metadata import DatasetMetadata, ModelCard, write_metadata, write_model_card
from transforms.shards import open_shard_writer, shard_name
from transforms.records import make_rows
from transforms.sources import expand_inputs, refs_from_uris
from transforms.spec import ParameterMismatchError, SpectrogramParams

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 8000
PARAMS = SpectrogramParams(sample_rate=SR, n_fft=256, hop_length=128, n_mels=16,
                           segment_seconds=0.5, segment_hop_seconds=0.5)
GENRES = {"drone": 180.0, "whistle": 2400.0}
IN_PROCESS = ["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"]
BAD = {"corrupt.wav": "decode_error", "short.wav": "too_short", "empty.wav": "empty", "notes.txt": "unsupported_format"}


def _tone(freq: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _make_catalog(root: str) -> str:
    """GTZAN-like layout: <root>/<genre>/<genre>.0000i.wav, plus bad inputs under drone/."""
    for g, (genre, freq) in enumerate(GENRES.items()):
        os.makedirs(os.path.join(root, genre))
        for i in range(3):
            sf.write(os.path.join(root, genre, f"{genre}.{i:05d}.wav"), _tone(freq, 1.2 + 0.4 * i, 10 * g + i), SR)
    bad = os.path.join(root, "drone")
    with open(os.path.join(bad, "corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    sf.write(os.path.join(bad, "short.wav"), _tone(300.0, 0.1, 99), SR)
    open(os.path.join(bad, "empty.wav"), "wb").close()
    with open(os.path.join(bad, "notes.txt"), "w") as f:
        f.write("not audio")
    return root


def _train_model(model_dir: str, *, audio_root: str, seed: int) -> ModelCard:
    """Fit a tiny CNN for a few epochs on the catalog's spectrograms; write .keras + model.json."""
    import keras

    keras.utils.set_random_seed(seed)
    labels = sorted(GENRES)
    refs = [r for r in refs_from_uris(expand_inputs([f"{audio_root}/*/*.wav"])) if os.path.basename(r.uri) not in BAD]
    xs, ys = [], []
    for ref in refs:
        mels = featurize_track(ref, params=PARAMS).mels
        xs.append(mels)
        ys += [labels.index(ref.label)] * len(mels)
    x = np.concatenate(xs)
    model = tiny_cnn(PARAMS, n_labels=len(labels))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, np.array(ys), epochs=5, batch_size=8, verbose=0)
    return save_model_dir(model, model_dir, labels=labels, params=PARAMS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("label")
    audio = _make_catalog(str(base / "audio"))
    card = _train_model(str(base / "model"), audio_root=audio, seed=0)
    return {"base": base, "audio": audio, "model": str(base / "model"), "card": card}


def _run(world, out, date, *extra, inputs=None):
    argv = ["--input", inputs or f"{world['audio']}/**/*", "--model-dir", world["model"], "--output", str(out),
            "--run-date", date, "--min-batch-size", "2", "--max-batch-size", "8", *extra, *IN_PROCESS]
    return label.run(argv)


def _good_refs(world):
    return [r for r in refs_from_uris(expand_inputs([f"{world['audio']}/**/*"]))
            if os.path.basename(r.uri) not in BAD]


def _comparable(table):
    df = table.to_pandas().drop(columns=["labeled_at"]).sort_values("track_id").reset_index(drop=True)
    for col in ("probabilities", "top_k"):
        df[col] = df[col].map(lambda v: json.dumps(sorted(v) if isinstance(v, list) and v and isinstance(v[0], tuple)
                                                   else list(v), default=str))
    return df


def test_labels_equal_the_model_called_directly(world, tmp_path):
    import keras

    manifest = _run(world, tmp_path, "2026-11-01", "--embeddings", "--top-k", "2")
    c = manifest["counts"]
    good = _good_refs(world)
    assert c["inputs"] == len(good) + len(BAD) == c["labeled"] + c["skipped"] + c["dead_letters"]
    assert c["balanced"] is True
    assert (c["labeled"], c["skipped"]) == (len(good), 0)
    assert manifest["failures"] == {reason: list(BAD.values()).count(reason) for reason in set(BAD.values())}
    part = tmp_path / "run_date=2026-11-01"
    assert json.loads((part / "_run.json").read_text())["counts"] == c
    letters = [json.loads(line) for line in (part / "_errors" / "dead_letters-00000-of-00001.jsonl").open()]
    assert sorted((os.path.basename(d["uri"]), d["reason"]) for d in letters) == sorted(BAD.items())

    model = keras.models.load_model(os.path.join(world["model"], world["card"].model_file))
    embed = keras.Model(model.inputs[0], model.get_layer("embedding").output)
    rows = {r["track_id"]: r for r in label_store.read_labels(str(tmp_path)).to_pylist()}
    assert sorted(rows) == sorted(r.track_id for r in good)
    for ref in good:
        feats = featurize_track(ref, params=PARAMS)
        p = model.predict(feats.mels, verbose=0).astype(np.float64).mean(axis=0)
        row = rows[ref.track_id]
        assert dict(row["probabilities"]) == pytest.approx(dict(zip(world["card"].labels, p)), abs=1e-5)
        assert row["genre"] == world["card"].labels[int(np.argmax(p))]
        assert row["score"] == pytest.approx(p.max(), abs=1e-5)
        assert [t["genre"] for t in row["top_k"]] == [world["card"].labels[i] for i in np.argsort(-p)[:2]]
        assert row["n_segments"] == len(feats.mels)
        assert row["duration_seconds"] == pytest.approx(feats.duration_seconds, abs=1e-4)
        assert row["embedding"] == pytest.approx(embed.predict(feats.mels, verbose=0).mean(axis=0), abs=1e-4)
        assert row["model_version"] == world["card"].model_version and row["uri"] == ref.uri
        assert row["fingerprint"].startswith("size:") and row["run_date"] == "2026-11-01"
    # the model learned something: most tracks get their folder's genre
    assert sum(rows[r.track_id]["genre"] == r.label for r in good) >= len(good) - 1

    # Readers: pyarrow dataset with Hive partitioning ignores _run.json, _errors and _staging.
    table = ds.dataset(str(tmp_path), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == len(good) and "run_date" in table.column_names
    assert len(pd.read_parquet(str(tmp_path))) == len(good)
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"SELECT run_date, count(*) AS n, count(DISTINCT track_id) AS u FROM "
        f"read_parquet('{tmp_path}/*/*.parquet', hive_partitioning=true) GROUP BY run_date").fetchall()
    assert [(str(d), n, u) for d, n, u in got] == [("2026-11-01", len(good), len(good))]


def test_json_lines_output_is_readable(world, tmp_path):
    manifest = _run(world, tmp_path, "2026-11-01", "--format", "jsonl")
    files = sorted((tmp_path / "run_date=2026-11-01").glob("part-*.jsonl"))
    assert files and manifest["counts"]["labeled"] == len(_good_refs(world))
    df = pd.concat([pd.read_json(f, lines=True) for f in files if f.stat().st_size])
    assert len(df) == manifest["counts"]["labeled"] and df["track_id"].is_unique
    assert set(df.columns) >= {"track_id", "uri", "fingerprint", "model_version", "labeled_at", "genre",
                               "probabilities"}
    first = df.iloc[0]
    assert first["probabilities"][first["genre"]] == pytest.approx(first["score"])
    table = ds.dataset(str(tmp_path), format="json", partitioning="hive").to_table()
    assert table.num_rows == len(df)
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"SELECT count(*) FROM read_json_auto('{tmp_path}/*/*.jsonl')").fetchall() == [(len(df),)]


def test_nightly_skips_and_relabels(world, tmp_path_factory):
    audio = str(tmp_path_factory.mktemp("catalog"))
    os.rmdir(audio)
    _make_catalog(audio)
    out = tmp_path_factory.mktemp("out")
    glob = f"{audio}/**/*"
    n_good = 6
    first = _run(world, out, "2026-11-01", inputs=glob)["counts"]
    assert (first["labeled"], first["skipped"]) == (n_good, 0)

    second = _run(world, out, "2026-11-02", inputs=glob)["counts"]
    assert (second["labeled"], second["skipped"], second["dead_letters"]) == (0, n_good, len(BAD))
    assert second["inputs"] == second["labeled"] + second["skipped"] + second["dead_letters"]

    # a changed file is relabeled; a new file is labeled
    changed = os.path.join(audio, "whistle", "whistle.00001.wav")
    sf.write(changed, _tone(2400.0, 2.0, 123), SR)
    sf.write(os.path.join(audio, "whistle", "whistle.00009.wav"), _tone(2400.0, 1.0, 7), SR)
    third = _run(world, out, "2026-11-03", inputs=glob)
    assert (third["counts"]["labeled"], third["counts"]["skipped"]) == (2, n_good - 1)
    rows = label_store.read_labels(str(out), run_date="2026-11-03").to_pylist()
    assert sorted(r["track_id"] for r in rows) == ["whistle/whistle.00001.wav", "whistle/whistle.00009.wav"]
    assert next(r for r in rows if r["track_id"].endswith("00001.wav"))["n_segments"] == 4  # 2.0 s / 0.5 s

    # --no-skip-labeled relabels everything
    forced = _run(world, out, "2026-11-04", "--no-skip-labeled", inputs=glob)["counts"]
    assert (forced["labeled"], forced["skipped"]) == (n_good + 1, 0)

    # a new model version relabels everything
    model2 = str(tmp_path_factory.mktemp("model2"))
    card2 = _train_model(model2, audio_root=world["audio"], seed=1)
    assert card2.model_version != world["card"].model_version
    argv = ["--input", glob, "--model-dir", model2, "--output", str(out), "--run-date", "2026-11-05", *IN_PROCESS]
    new_model = label.run(argv)["counts"]
    assert (new_model["labeled"], new_model["skipped"]) == (n_good + 1, 0)
    versions = {r["model_version"] for r in label_store.read_labels(str(out), run_date="2026-11-05").to_pylist()}
    assert versions == {card2.model_version}


def test_same_date_rerun_replaces_the_partition(world, tmp_path):
    refs = refs_from_uris(expand_inputs([f"{world['audio']}/**/*"]))
    labeled_first = sum(os.path.basename(r.uri) not in BAD for r in refs[:4])
    assert _run(world, tmp_path, "2026-11-01", "--limit", "4")["counts"]["labeled"] == labeled_first
    assert _run(world, tmp_path, "2026-11-02", "--limit", "6")["counts"]["skipped"] == labeled_first
    before = _comparable(label_store.read_labels(str(tmp_path), run_date="2026-11-02"))
    again = _run(world, tmp_path, "2026-11-02", "--limit", "6")
    after = _comparable(label_store.read_labels(str(tmp_path), run_date="2026-11-02"))
    pd.testing.assert_frame_equal(before, after)
    assert after["track_id"].is_unique and len(after) == again["counts"]["labeled"]
    # the rerun saw only partitions before its date, as the first run did
    assert again["counts"]["skipped"] == labeled_first
    assert sorted(os.listdir(tmp_path)) == ["run_date=2026-11-01", "run_date=2026-11-02"]


def test_limit_and_sample_pick_the_same_tracks(world):
    refs = refs_from_uris(expand_inputs([f"{world['audio']}/**/*"]))
    assert label.select_inputs(refs, limit=3) == refs[:3]
    sample = label.select_inputs(refs, sample=0.5)
    assert sample == label.select_inputs(refs, sample=0.5) and 0 < len(sample) < len(refs)
    assert label.select_inputs(refs, sample=0.5, limit=1) == sample[:1]


def test_failed_run_leaves_the_published_partition_alone(world, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("out")
    first = _run(world, tmp_path, "2026-11-01", "--limit", "3")
    published = json.loads((tmp_path / "run_date=2026-11-01" / "_run.json").read_text())
    broken = tmp_path_factory.mktemp("broken-model")
    (broken / "model.keras").write_bytes(b"not a keras file")
    card = dataclasses.replace(world["card"], model_version="broken")
    write_model_card(str(broken), card)
    argv = ["--input", f"{world['audio']}/**/*", "--model-dir", str(broken), "--output", str(tmp_path),
            "--run-date", "2026-11-01", *IN_PROCESS]
    with pytest.raises(Exception):
        label.run(argv)
    assert json.loads((tmp_path / "run_date=2026-11-01" / "_run.json").read_text())["run_id"] == published["run_id"]
    assert sorted(p for p in os.listdir(tmp_path) if not p.startswith("_")) == ["run_date=2026-11-01"]
    readable = ds.dataset(str(tmp_path), format="parquet", partitioning="hive").to_table()
    assert readable.num_rows == first["counts"]["labeled"]


def test_killed_run_leaves_no_finished_looking_partition(world, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "pipelines.label", "--input", f"{world['audio']}/**/*", "--model-dir",
           world["model"], "--output", str(tmp_path), "--run-date", "2026-11-07", *IN_PROCESS]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = tmp_path / "_staging" / "run_date=2026-11-07"
    deadline = time.time() + 120
    def writing_started() -> bool:  # the pipeline made its temporary output folder in the staging dir
        return staging.exists() and any(any(run.iterdir()) for run in staging.iterdir())

    while time.time() < deadline and proc.poll() is None and not writing_started():
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert writing_started()
    assert not (tmp_path / "run_date=2026-11-07").exists()
    assert [p for p in os.listdir(tmp_path) if not p.startswith("_")] == []
    # the next run of that date cleans up and publishes
    manifest = _run(world, tmp_path, "2026-11-07", "--limit", "2")
    assert manifest["counts"]["inputs"] == manifest["counts"]["labeled"] + manifest["counts"]["dead_letters"] == 2
    assert not staging.exists() and not (tmp_path / "_staging").exists()


def test_bad_model_dir_or_features_fail_before_any_work(world, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="model.json"):
        label.run(["--input", f"{world['audio']}/**/*", "--model-dir", str(tmp_path), "--output", str(out),
                   *IN_PROCESS])
    feats = tmp_path / "features"
    feats.mkdir()
    other = dataclasses.replace(PARAMS, n_mels=20)
    write_metadata(str(feats), DatasetMetadata(spectrogram=other, labels=sorted(GENRES), format="parquet",
                                               shards={}, counts={}, inputs={}, failures={}))
    with pytest.raises(ParameterMismatchError, match="n_mels"):
        label.run(["--features", str(feats), "--model-dir", world["model"], "--output", str(out), *IN_PROCESS])
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_features_dir_gives_the_same_labels_as_audio(world, tmp_path, fmt):
    feats = str(tmp_path / "features")
    os.makedirs(feats)
    good = _good_refs(world)
    name = shard_name("test", 0, 1, fmt=fmt)
    writer = open_shard_writer(os.path.join(feats, name), fmt=fmt, params=PARAMS)
    for ref in good:
        f = featurize_track(ref, params=PARAMS)
        writer.write(make_rows(f.mels, params=PARAMS, track_id=ref.track_id, uri=ref.uri, label=ref.label,
                               label_index=sorted(GENRES).index(ref.label), split="test", starts=f.starts))
    writer.close()
    write_metadata(feats, DatasetMetadata(spectrogram=PARAMS, labels=sorted(GENRES), format=fmt,
                                          shards={"test": [name]}, counts={}, inputs={}, failures={}))
    from_features = label.run(["--features", feats, "--model-dir", world["model"], "--output", str(tmp_path / "a"),
                               "--run-date", "2026-11-01", *IN_PROCESS])
    assert from_features["counts"]["labeled"] == len(good) == from_features["counts"]["inputs"]
    manifest = tmp_path / "tracks.csv"  # the audio side reads a manifest
    manifest.write_text("uri,track_id\n" + "".join(f"{r.uri},{r.track_id}\n" for r in good))
    from_audio = label.run(["--manifest", str(manifest), "--model-dir", world["model"], "--output",
                            str(tmp_path / "b"), "--run-date", "2026-11-01", *IN_PROCESS])
    assert from_audio["counts"]["labeled"] == len(good)
    a = {r["track_id"]: dict(r["probabilities"]) for r in label_store.read_labels(str(tmp_path / "a")).to_pylist()}
    b = {r["track_id"]: dict(r["probabilities"]) for r in label_store.read_labels(str(tmp_path / "b")).to_pylist()}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-6)


class _FailingHandler(GenreModelHandler):
    """A model handler whose every batch fails (stands in for a model that throws)."""

    def run_inference(self, batch, model, inference_args=None):
        raise RuntimeError("model exploded")


def test_failed_inference_batches_become_dead_letters(world, tmp_path, monkeypatch):
    import transforms.inference as inference

    monkeypatch.setattr(inference, "GenreModelHandler", _FailingHandler)
    manifest = _run(world, tmp_path, "2026-11-01")
    c, good = manifest["counts"], _good_refs(world)
    assert (c["labeled"], c["dead_letters"]) == (0, len(good) + len(BAD))
    assert manifest["failures"]["inference_error"] == len(good)
    letters = [json.loads(line) for line in
               (tmp_path / "run_date=2026-11-01" / "_errors" / "dead_letters-00000-of-00001.jsonl").open()]
    infer = [d for d in letters if d["stage"] == "infer"]
    assert sorted(d["track_id"] for d in infer) == sorted(r.track_id for r in good)
    assert all("model exploded" in d["message"] for d in infer)
