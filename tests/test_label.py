"""End-to-end tests of the label job on generated audio, with a tiny model trained here.

The model is trained in the module fixture on small spectrograms (16 mel bands, 0.5 s segments at
8 kHz) so that every run takes seconds; it does not use ``training/``.  Pipelines run on the
in-process FnApiRunner.  Expected values come from calling the Keras model directly on
``featurize_track`` output, not from the job; what a reader sees is read with pyarrow and DuckDB
from the files the partition's ``_run.json`` lists.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
import soundfile as sf

from pipelines import label
from tinymodel import save_model_dir, tiny_cnn
from transforms import commit, label_store
from transforms.beam_audio import featurize_track
from transforms.deadletters import DeadLetter
from transforms.inference import GenreModelHandler
from transforms.metadata import DatasetMetadata, ModelCard, write_metadata
from transforms.shards import open_shard_writer, shard_name
from transforms.records import make_rows
from transforms.sources import TrackRef, in_sample, refs_from_pattern
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


def _refs(pattern: str) -> list[TrackRef]:
    """What the job's input matching finds (sorted by track id), without Beam."""
    return sorted((r for r in refs_from_pattern(pattern) if isinstance(r, TrackRef)), key=lambda r: r.track_id)


def _train_model(model_dir: str, *, audio_root: str, seed: int) -> ModelCard:
    """Fit a tiny CNN for a few epochs on the catalog's spectrograms; write .keras + model.json."""
    import keras

    keras.utils.set_random_seed(seed)
    labels = sorted(GENRES)
    refs = [r for r in _refs(f"{audio_root}/*/*.wav") if os.path.basename(r.uri) not in BAD]
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
            "--run-date", date, "--min-batch-size", "2", "--max-batch-size", "8", "--max-error-fraction", "0.5",
            *extra, *IN_PROCESS]
    return label.run(argv)


def _good_refs(world):
    return [r for r in _refs(f"{world['audio']}/**/*") if os.path.basename(r.uri) not in BAD]


def _partition(out, date) -> str:
    return os.path.join(str(out), f"run_date={date}")


def _commit(out, date) -> dict:
    with open(os.path.join(_partition(out, date), label_store.RUN_MANIFEST)) as f:
        return json.load(f)


def _listed(out, date, kind="rows") -> list[str]:
    """The files of one kind that the partition's _run.json lists, as paths: what a reader reads."""
    return [os.path.join(_partition(out, date), name) for name in _commit(out, date)["files"][kind]]


def _ids(out, date) -> list[str]:
    return sorted(label_store.read_labels(str(out), run_date=date)["track_id"].to_pylist())


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
    # layout: the commit record and one immutable run folder holding everything the run wrote
    part = tmp_path / "run_date=2026-11-01"
    run = f"run_id={manifest['run_id']}"
    assert sorted(os.listdir(part)) == ["_run.json", run]
    assert _commit(tmp_path, "2026-11-01") == manifest
    summary = json.loads((part / run / commit.SUMMARY_FILE).read_text())
    assert summary["counts"] == c and summary["failures"] == manifest["failures"]
    assert manifest["files"]["rows"] == [f"{run}/part-00000-of-00001.parquet"]
    letters = [json.loads(line) for f in _listed(tmp_path, "2026-11-01", "dead_letters") for line in open(f)]
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
        # the skip key is the file listing's version: size and mtime on a local disk
        assert row["fingerprint"] == ref.listing and ref.listing.startswith("size:")
        assert row["run_date"] == "2026-11-01"
    # the model learned something: most tracks get their folder's genre
    assert sum(rows[r.track_id]["genre"] == r.label for r in good) >= len(good) - 1

    # Readers that follow _run.json: pyarrow and DuckDB on exactly the listed files.
    files = _listed(tmp_path, "2026-11-01")
    assert ds.dataset(files, format="parquet").to_table().num_rows == len(good)
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()  # docs/label.md's query: DuckDB follows _run.json itself
    con.sql(f"SET VARIABLE files = (SELECT list('{part}/' || f) FROM "
            f"(SELECT unnest(files.rows) AS f FROM read_json('{part}/_run.json')))")
    got = con.sql("SELECT count(*), count(DISTINCT track_id) FROM read_parquet(getvariable('files'))").fetchall()
    assert got == [(len(good), len(good))]


def test_nightly_skips_and_relabels(world, tmp_path_factory):
    audio = str(tmp_path_factory.mktemp("catalog"))
    os.rmdir(audio)
    _make_catalog(audio)
    out = tmp_path_factory.mktemp("out")
    glob = f"{audio}/**/*"
    n_good = 6
    first = _run(world, out, "2026-11-01", "--format", "jsonl", inputs=glob)["counts"]
    assert (first["labeled"], first["skipped"]) == (n_good, 0)
    # JSON Lines output, read by pandas, pyarrow and DuckDB from the files _run.json lists
    files = _listed(out, "2026-11-01")
    assert [os.path.basename(f) for f in files] == ["part-00000-of-00001.jsonl"]
    df = pd.concat([pd.read_json(f, lines=True) for f in files])
    assert sorted(df["track_id"]) == _ids(out, "2026-11-01") and len(df) == n_good
    assert set(df.columns) >= {"track_id", "uri", "fingerprint", "model_version", "labeled_at", "genre",
                               "probabilities"}
    row = df.iloc[0]
    assert row["probabilities"][row["genre"]] == pytest.approx(row["score"])
    assert ds.dataset(files, format="json").to_table().num_rows == n_good
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"SELECT count(*) FROM read_json_auto({files!r})").fetchall() == [(n_good,)]

    # the skip is a join with the earlier (JSON Lines) partition, inside the pipeline
    second = _run(world, out, "2026-11-02", inputs=glob)["counts"]
    assert (second["labeled"], second["skipped"], second["dead_letters"]) == (0, n_good, len(BAD))
    assert second["inputs"] == second["labeled"] + second["skipped"] + second["dead_letters"]
    assert second["segments"] == 0

    # a changed file is relabeled; a new file is labeled
    changed = os.path.join(audio, "whistle", "whistle.00001.wav")
    sf.write(changed, _tone(2400.0, 2.0, 123), SR)
    sf.write(os.path.join(audio, "whistle", "whistle.00009.wav"), _tone(2400.0, 1.0, 7), SR)
    third = _run(world, out, "2026-11-03", inputs=glob)
    assert (third["counts"]["labeled"], third["counts"]["skipped"]) == (2, n_good - 1)
    rows = label_store.read_labels(str(out), run_date="2026-11-03").to_pylist()
    assert sorted(r["track_id"] for r in rows) == ["whistle/whistle.00001.wav", "whistle/whistle.00009.wav"]
    assert next(r for r in rows if r["track_id"].endswith("00001.wav"))["n_segments"] == 4  # 2.0 s / 0.5 s

    # --no-skip-labeled relabels everything (here with --sample: the tracks whose id hashes below 0.5);
    # a second input pattern adds tracks and renames none
    extra = tmp_path_factory.mktemp("more")
    os.makedirs(extra / "late")
    sf.write(str(extra / "late" / "late.00000.wav"), _tone(180.0, 1.0, 5), SR)
    forced = _run(world, out, "2026-11-04", "--no-skip-labeled", "--sample", "0.5", "--input", f"{extra}/**/*.wav",
                  inputs=glob)
    every = _ids(out, "2026-11-01") + ["late/late.00000.wav", "whistle/whistle.00009.wav"]
    sampled = sorted(t for t in every if in_sample(t, 0.5))
    assert 0 < len(sampled) < len(every)
    assert _ids(out, "2026-11-04") == sampled
    assert (forced["counts"]["labeled"], forced["counts"]["skipped"]) == (len(sampled), 0)

    # rerunning 2026-11-03 supersedes it with the same rows: it reads only partitions before its date
    # (2026-11-04 labeled whistle.00009 too, and must not make the rerun skip it)
    assert "whistle/whistle.00009.wav" in sampled
    before = _comparable(label_store.read_labels(str(out), run_date="2026-11-03"))
    # what a run killed mid-pipeline leaves (a run folder, never committed) and the old layout's _staging
    dead = Path(_partition(out, "2026-11-03")) / "run_id=20261103T000000Z-deadbeef"
    dead.mkdir()
    (dead / "part-00000-of-00001.parquet").write_bytes(b"half a file")
    (out / "_staging" / "run_date=2026-11-03" / "x").mkdir(parents=True)
    assert _comparable(label_store.read_labels(str(out), run_date="2026-11-03")).equals(before)
    again = _run(world, out, "2026-11-03", inputs=glob)
    pd.testing.assert_frame_equal(_comparable(label_store.read_labels(str(out), run_date="2026-11-03")), before)
    assert again["counts"] == third["counts"] and again["run_id"] != third["run_id"]
    # the new run is committed; the superseded run's folder and the leftovers are gone
    assert sorted(os.listdir(_partition(out, "2026-11-03"))) == ["_run.json", f"run_id={again['run_id']}"]
    assert sorted(os.listdir(out)) == [f"run_date=2026-11-0{d}" for d in range(1, 5)]


def test_skip_join_matches_track_fingerprint_and_model_version(tmp_path):
    """SkipLabeled alone (no model): what counts as labeled earlier, from committed partitions only."""
    from apache_beam.testing.util import assert_that, equal_to

    out = str(tmp_path)

    def partition(date, rows, *, committed=True):
        part = label_store.partition_dir(out, date)
        name = f"run_id={date.replace('-', '')}T000000Z-00000000/part-00000-of-00001.parquet"
        os.makedirs(os.path.dirname(os.path.join(part, name)))
        label_store.write_part(os.path.join(part, name), [
            {"track_id": t, "fingerprint": fp, "model_version": v, "uri": t, "labeled_at": None,
             "probabilities": {}, "top_k": []} for t, fp, v in rows], fmt="parquet")
        if committed:
            label_store.commit_partition(part, {"run_id": name.split("/")[0][7:], "files": {"rows": [name]}})

    partition("2026-11-01", [("a", "f1", "v1"), ("b", "f1", "v1"), ("c", "f1", "v0")])
    partition("2026-11-02", [("g", "f1", "v1")], committed=False)  # a run that never committed
    partition("2026-11-03", [("d", "f1", "v1")])  # on the run date: a rerun must not see it
    refs = [TrackRef(uri=t, track_id=t, listing=fp) for t, fp in
            [("a", "f1"), ("b", "f2"), ("c", "f1"), ("d", "f1"), ("g", "f1"), ("h", "")]]
    import apache_beam as beam

    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(IN_PROCESS)) as p:
        checked = p | beam.Create(refs) | label.SkipLabeled(output_dir=out, run_date="2026-11-03", model_version="v1")
        # a: same file, same model; b: changed file; c: other model; d: dated on the run date;
        # g: never committed; h: unknown fingerprint (never skipped)
        assert_that(checked[label.SKIPPED], equal_to(["a"]), label="Skipped")
        assert_that(checked["todo"] | beam.Map(lambda r: r.track_id), equal_to(["b", "c", "d", "g", "h"]),
                    label="ToLabel")


class _FailingHandler(GenreModelHandler):
    """A model handler whose every batch fails (stands in for a model that throws)."""

    def run_inference(self, batch, model, inference_args=None):
        raise RuntimeError("model exploded")


class _Killed(BaseException):
    """Stands in for the launcher process dying (not an Exception: nothing catches it)."""


def test_failed_or_killed_runs_never_change_what_readers_see(world, tmp_path, monkeypatch, capsys):
    import transforms.inference as inference

    date = "2026-11-01"
    part = tmp_path / f"run_date={date}"
    # the first run reads a manifest (ids as written in it; a bad file is a dead letter there too)
    manifest = tmp_path.parent / f"{tmp_path.name}-tracks.csv"
    chosen = [r for r in _refs(f"{world['audio']}/**/*")][:3]
    manifest.write_text("uri,track_id\n" + "".join(f"{r.uri},id-{r.track_id}\n" for r in chosen))
    first = label.run(["--manifest", str(manifest), "--model-dir", world["model"], "--output", str(tmp_path),
                       "--run-date", date, "--max-error-fraction", "0.5", *IN_PROCESS])
    first_ids = _ids(tmp_path, date)
    assert first_ids == sorted(f"id-{r.track_id}" for r in chosen if os.path.basename(r.uri) not in BAD)
    assert first["counts"]["inputs"] == 3 and len(first_ids) == first["counts"]["labeled"] == 2

    def unchanged() -> None:
        assert _commit(tmp_path, date) == first
        assert _ids(tmp_path, date) == first_ids
        assert sorted(os.listdir(tmp_path)) == [f"run_date={date}"]

    argv = ["--input", f"{world['audio']}/**/*", "--model-dir", world["model"], "--output", str(tmp_path),
            "--run-date", date, *IN_PROCESS]
    # 1. the pipeline fails (writing a part file fails, as on a full disk): exit 1, nothing committed
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(label.label_store, "write_part", disk_full)
    assert label.main(argv + ["--max-error-fraction", "0.5"]) == 1
    monkeypatch.undo()
    assert "the pipeline failed, nothing committed" in capsys.readouterr().err
    unchanged()

    # 2. every input fails (the model throws on every batch): above --max-error-fraction (default 0.1)
    handler = inference.GenreModelHandler
    monkeypatch.setattr(inference, "GenreModelHandler", _FailingHandler)
    assert label.main(argv) == 1
    monkeypatch.setattr(inference, "GenreModelHandler", handler)
    err = capsys.readouterr().err
    assert "10 of 10 inputs failed" in err and "--max-error-fraction 0.1" in err and "nothing committed" in err
    unchanged()
    # its dead letters are kept in its run folder (not committed) until the next run of the date
    (failed,) = [p for p in part.glob("run_id=*") if p.name != f"run_id={first['run_id']}"]
    summary = json.loads((failed / commit.SUMMARY_FILE).read_text())
    good = _good_refs(world)
    assert summary["counts"]["dead_letters"] == summary["counts"]["inputs"] == len(good) + len(BAD)
    assert summary["failures"]["inference_error"] == len(good)
    letters = [json.loads(line) for name in summary["files"]["dead_letters"] for line in open(failed / name)]
    infer = [d for d in letters if d["stage"] == "infer"]
    assert sorted(d["track_id"] for d in infer) == sorted(r.track_id for r in good)
    assert all("model exploded" in d["message"] for d in infer)

    # 3. killed right after the commit write, before any cleanup: the new run, all of it, and nothing
    #    of the old one (killed before the write is case 2: an exception between pipeline and commit)
    real_commit = label_store.commit_partition

    def die_after(partition, record):
        real_commit(partition, record)
        raise _Killed()

    monkeypatch.setattr(label_store, "commit_partition", die_after)
    with pytest.raises(_Killed):
        _run(world, tmp_path, date, "--limit", "5")
    second = _commit(tmp_path, date)
    second_ids = _ids(tmp_path, date)
    assert second["run_id"] != first["run_id"] and len(second_ids) == second["counts"]["labeled"] == 3
    assert (part / f"run_id={first['run_id']}").exists() and len(list(part.glob("run_id=*"))) == 2
    assert ds.dataset(_listed(tmp_path, date), format="parquet").to_table().num_rows == len(second_ids)


def test_bad_options_fail_before_any_work(world, tmp_path, capsys):
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
    missing = tmp_path / "nowhere"
    assert label.main(["--input", f"{missing}/**/*.wav", "--model-dir", world["model"], "--output", str(out),
                       *IN_PROCESS]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_batch_sizes_come_from_the_options_else_the_model_card():
    card = ModelCard(model_file="m.keras", model_version="v", labels=["a"], spectrogram=PARAMS,
                     input_shape=list(PARAMS.mel_shape))
    backbone = dataclasses.replace(card, inference_batch_size=16)  # what a musicnn model records (32)
    assert label.batch_sizes(card, fewest=None, most=None) == {"min_batch_size": 32, "max_batch_size": 256}
    assert label.batch_sizes(backbone, fewest=None, most=None) == {"min_batch_size": 16, "max_batch_size": 16}
    assert label.batch_sizes(backbone, fewest=4, most=64) == {"min_batch_size": 4, "max_batch_size": 64}
    with pytest.raises(ValueError, match="--min-batch-size 24 is above .* 16"):
        label.batch_sizes(backbone, fewest=24, most=None)


def _write_features(feats: str, refs, *, fmt: str) -> None:
    os.makedirs(feats)
    name = shard_name("test", 0, 1, fmt=fmt)
    writer = open_shard_writer(os.path.join(feats, name), fmt=fmt, params=PARAMS)
    for ref in refs:
        f = featurize_track(ref, params=PARAMS)
        writer.write(make_rows(f.mels, params=PARAMS, track_id=ref.track_id, uri=ref.uri, label=ref.label,
                               label_index=sorted(GENRES).index(ref.label), split="test", starts=f.starts))
    writer.close()
    write_metadata(feats, DatasetMetadata(spectrogram=PARAMS, labels=sorted(GENRES), format=fmt,
                                          shards={"test": [name]}, counts={}, inputs={}, failures={}))


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_features_dir_gives_the_labels_of_the_model_on_those_features(world, tmp_path, fmt):
    import keras

    feats = str(tmp_path / "features")
    good = _good_refs(world)
    _write_features(feats, good, fmt=fmt)
    argv = ["--features", feats, "--model-dir", world["model"], "--output", str(tmp_path / "a"), *IN_PROCESS]
    from_features = label.run(argv + ["--run-date", "2026-11-01"])
    assert from_features["counts"]["labeled"] == len(good) == from_features["counts"]["inputs"]
    rows = {r["track_id"]: r for r in label_store.read_labels(str(tmp_path / "a")).to_pylist()}
    assert sorted(rows) == sorted(r.track_id for r in good)
    model = keras.models.load_model(os.path.join(world["model"], world["card"].model_file))
    for ref in good:
        mels = featurize_track(ref, params=PARAMS).mels
        p = np.asarray(model(mels, training=False), np.float64).mean(axis=0)
        row = rows[ref.track_id]
        assert dict(row["probabilities"]) == pytest.approx(dict(zip(world["card"].labels, p)), abs=1e-5)
        assert row["n_segments"] == len(mels) and row["uri"] == ref.uri
        assert row["fingerprint"] == label.CONTENT_FINGERPRINT + row["content_hash"]
    if fmt == "parquet":  # the same features the next night: skipped by their content hash
        again = label.run(argv + ["--run-date", "2026-11-02"])["counts"]
        assert (again["labeled"], again["skipped"]) == (0, len(good))


def test_shard_tracks_streams_one_track_at_a_time_and_rejects_broken_order():
    rows = []
    mels = {t: np.full((n, PARAMS.n_mels, PARAMS.n_frames), float(i), np.float32)
            for i, (t, n) in enumerate([("a", 2), ("b", 3), ("c", 1)])}
    for t, m in mels.items():
        rows += make_rows(m, params=PARAMS, track_id=t, uri=f"/x/{t}.wav", label="drone", label_index=0,
                          split="test", starts=[i * 4000 for i in range(len(m))])
    out = list(label.shard_tracks(iter(rows), shard="s", sample_rate=SR, segment_seconds=0.5))
    assert [o.ref.track_id for o in out] == ["a", "b", "c"]
    for o in out:
        np.testing.assert_array_equal(o.mels, mels[o.ref.track_id])
        assert o.ref.listing == label.CONTENT_FINGERPRINT + o.content_hash
    assert out[1].starts == [0, 4000, 8000] and out[1].duration_seconds == pytest.approx(1.5)
    # b's segments split by a's: the piece that comes back is a dead letter; c without segment 0 is one too
    broken = rows[2:3] + rows[0:2] + rows[3:5] + [dict(rows[5], segment_index=1)]
    out = list(label.shard_tracks(iter(broken), shard="s", sample_rate=SR, segment_seconds=0.5))
    labeled = [o.ref.track_id for o in out if not isinstance(o, DeadLetter)]
    letters = [(o.track_id, o.reason) for o in out if isinstance(o, DeadLetter)]
    assert labeled == ["b", "a"] and letters == [("b", "bad_segments"), ("c", "bad_segments")]
