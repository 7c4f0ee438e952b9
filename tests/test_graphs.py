"""The featurize and label graphs, driven by ``TestPipeline`` and checked with ``assert_that`` on their PCollections.

Each test builds a job dataclass by hand (no command line), adds the job's graph with its
``build_pipeline`` (or ``LabelTracks`` alone), and checks what flows through the graph: per-track
results and dead letters, not just the files written afterwards.  Expected values come from
outside the graph: segment counts from the clip durations, probabilities from calling the Keras
model directly on :func:`transforms.beam_audio.featurize_track` output.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

import apache_beam as beam
from conftest import write_audio
from pipelines import featurize, label
from tinymodel import save_model_dir, tiny_cnn
from transforms import commit, storage
from transforms.beam_audio import ReadLimits, featurize_track
from transforms.deadletters import DEAD_LETTERS
from transforms.sources import TrackRef
from transforms.spec import SpectrogramParams

SR = 8000
PARAMS = SpectrogramParams(sample_rate=SR, n_fft=256, hop_length=128, n_mels=16,
                           segment_seconds=0.5, segment_hop_seconds=0.5)
#: track id -> (seconds, tone Hz); whole numbers of 0.5 s segments, so each has seconds / 0.5 segments.
CLIPS = {"drone/a.wav": (1.0, 180.0), "drone/b.wav": (1.5, 200.0), "whistle/c.wav": (2.0, 2400.0)}
BROKEN = "drone/broken.wav"
RUN_DATE = "2026-11-01"
LABELED_AT = datetime.datetime(2026, 11, 1, 3, 0, tzinfo=datetime.timezone.utc)


def _pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(options=PipelineOptions(["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"]),
                        blocking=True)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> str:
    """Three clips under two genre folders and one file of random bytes named .wav."""
    root = tmp_path_factory.mktemp("catalog")
    for i, (track_id, (seconds, freq)) in enumerate(CLIPS.items()):
        write_audio(root / track_id, seconds=seconds, sample_rate=SR, freq=freq, seed=i)
    (root / BROKEN).write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return str(root)


def _reasons(letters):
    return letters | "Reasons" >> beam.Map(lambda d: (d.track_id, d.stage, d.reason))


def test_featurize_graph_gives_tracks_and_dead_letters(catalog, tmp_path):
    job = featurize.FeaturizeJob(patterns=[f"{catalog}/**/*.wav"], manifest=None, output=str(tmp_path),
                                 run_id="20261101T000000Z-00000000", fmt="parquet", params=PARAMS,
                                 limits=ReadLimits(), fractions=(1.0, 0.0, 0.0))
    with _pipeline() as p:
        out = featurize.build_pipeline(p, job)
        stats = out["tracks"] | "Stats" >> beam.Map(lambda t: (t["track_id"], t["split"], t["label"], t["segments"],
                                                               t["seconds"]))
        assert_that(stats, equal_to([(t, "train", t.split("/")[0], int(s / 0.5), s) for t, (s, _) in CLIPS.items()]),
                    label="Tracks")
        assert_that(_reasons(out[DEAD_LETTERS]), equal_to([(BROKEN, "decode", "decode_error")]), label="Dead")
        assert_that(out["summary"], equal_to([storage.join_uri(job.run_dir, commit.SUMMARY_FILE)]), label="Summary")
    summary = storage.read_json(storage.join_uri(job.run_dir, commit.SUMMARY_FILE))
    assert (summary["inputs"], summary["featurized"], summary["failed"]) == (4, 3, 1)
    assert summary["labels"] == ["drone", "whistle"] and summary["num_shards"] == {"train": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    """An untrained tiny CNN in a model dir, and the Keras model itself for the expected values."""
    import keras

    keras.utils.set_random_seed(0)
    net = tiny_cnn(PARAMS, n_labels=2)
    model_dir = str(tmp_path_factory.mktemp("model"))
    card = save_model_dir(net, model_dir, labels=["drone", "whistle"], params=PARAMS)
    return {"dir": model_dir, "card": card, "keras": net}


def _expected_probabilities(model, catalog) -> dict[str, dict[str, float]]:
    out = {}
    for track_id in CLIPS:
        mels = featurize_track(TrackRef(uri=os.path.join(catalog, track_id), track_id=track_id), params=PARAMS).mels
        mean = np.asarray(model["keras"](mels, training=False), np.float64).mean(axis=0)
        out[track_id] = dict(zip(model["card"].labels, mean))
    return out


def _rows_equal(expected: dict[str, dict[str, float]], model_version: str):
    """assert_that matcher: one row per expected track, with the model's mean probabilities."""

    def check(rows):
        got = {r["track_id"]: r for r in rows}
        assert sorted(got) == sorted(expected)
        for track_id, probs in expected.items():
            row = got[track_id]
            assert row["probabilities"] == pytest.approx(probs, abs=1e-5)
            assert row["genre"] == max(probs, key=probs.get)
            assert row["n_segments"] == int(CLIPS[track_id][0] / 0.5)
            assert (row["model_version"], row["labeled_at"]) == (model_version, LABELED_AT)

    return check


def _label_options(model, output_dir: str, **changes) -> label.LabelOptions:
    return label.LabelOptions(model_dir=model["dir"], card=model["card"], output_dir=output_dir, run_date=RUN_DATE,
                              labeled_at=LABELED_AT, min_batch_size=2, max_batch_size=8, **changes)


def test_label_graph_gives_rows_skips_and_dead_letters(catalog, model, tmp_path):
    job = label.LabelJob(label=_label_options(model, str(tmp_path)), run_id="20261101T030000Z-00000000",
                         patterns=[f"{catalog}/**/*.wav"])
    with _pipeline() as p:
        out = label.build_pipeline(p, job)
        assert_that(out["rows"], _rows_equal(_expected_probabilities(model, catalog), model["card"].model_version),
                    label="Rows")
        assert_that(_reasons(out[DEAD_LETTERS]), equal_to([(BROKEN, "decode", "decode_error")]), label="Dead")
        assert_that(out[label.SKIPPED], equal_to([]), label="Skipped")
        assert_that(out["parts"], equal_to([{"file": "part-00000-of-00001.parquet", "count": len(CLIPS)}]),
                    label="Parts")
    with open(storage.join_uri(job.run_dir, commit.SUMMARY_FILE)) as f:
        counts = json.load(f)["counts"]
    assert counts == {"inputs": 4, "labeled": 3, "skipped": 0, "dead_letters": 1,
                      "segments": sum(int(s / 0.5) for s, _ in CLIPS.values()), "balanced": True}


def test_label_tracks_on_features_without_skip_join(catalog, model, tmp_path):
    """LabelTracks alone on TrackFeatures (the ``--features`` path): no audio decoding, no history read."""
    features = [featurize_track(TrackRef(uri=os.path.join(catalog, t), track_id=t, listing="content:x"),
                                params=PARAMS) for t in CLIPS]
    options = _label_options(model, str(tmp_path / "nowhere"), skip_labeled=False, from_features=True)
    with _pipeline() as p:
        out = p | beam.Create(features) | label.LabelTracks(options)
        assert_that(out["rows"], _rows_equal(_expected_probabilities(model, catalog), model["card"].model_version),
                    label="Rows")
        assert_that(out[DEAD_LETTERS], equal_to([]), label="Dead")
        assert_that(out["segments"], equal_to([int(s / 0.5) for s, _ in CLIPS.values()]), label="Segments")
    assert not (tmp_path / "nowhere").exists()
