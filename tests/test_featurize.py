"""The featurize job end to end, read back with tf.data and pyarrow, plus its plain helpers."""

from __future__ import annotations

import collections
import csv
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import featurize
from transforms import spec
from transforms.deadletters import DeadLetter
from transforms.metadata import read_metadata
from transforms.records import make_rows, table_to_rows, tf_feature_description
from transforms.shards import TFRecordShardWriter, dead_letter_name, open_shard_writer
from transforms.sources import TrackRef
from transforms.spec import SpectrogramParams

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
#: 2.5 s clips -> 2 full segments + a 0.5 s tail that is kept
SHORT = ["--segment-seconds", "1", "--segment-hop-seconds", "1"]


# Readers (independent of the writers: tf.data and pyarrow) ---------------------------------------
def read_tfrecords(paths, params):
    import tensorflow as tf

    description = tf_feature_description(params)
    rows = []
    for path in paths:
        for raw in tf.data.TFRecordDataset([path], compression_type="GZIP"):
            ex = tf.io.parse_single_example(raw, description)
            row = {k: v.numpy() for k, v in ex.items()}
            for k in (spec.FEATURE_TRACK_ID, spec.FEATURE_URI, spec.FEATURE_LABEL, spec.FEATURE_SPLIT):
                row[k] = row[k].decode()
            row[spec.FEATURE_MEL] = row[spec.FEATURE_MEL].reshape(tuple(row[spec.FEATURE_MEL_SHAPE]))
            row["_file"] = os.path.basename(path)
            rows.append(row)
    return rows


def read_parquet(paths):
    rows = []
    for path in paths:
        table = pq.read_table(path)
        for row in table_to_rows(table):
            row["_file"] = os.path.basename(path)
            rows.append(row)
    return rows


def read_dataset(out):
    md = read_metadata(str(out))
    paths = md.shard_paths(str(out))
    assert all(os.path.exists(p) for p in paths), "metadata lists a missing shard"
    rows = read_tfrecords(paths, md.spectrogram) if md.format == "tfrecord" else read_parquet(paths)
    return md, rows


def check_consistent(md, rows):
    """Rows agree with metadata: counts, vocabulary, label index, one split (and its files) per track."""
    assert md.labels == sorted(md.labels)
    splits_of = collections.defaultdict(set)
    for row in rows:
        splits_of[row[spec.FEATURE_TRACK_ID]].add(row[spec.FEATURE_SPLIT])
        assert row["_file"].startswith(row[spec.FEATURE_SPLIT] + "-")
        assert md.labels[row[spec.FEATURE_LABEL_INDEX]] == row[spec.FEATURE_LABEL]
        assert row[spec.FEATURE_MEL].shape == md.spectrogram.mel_shape
        assert np.isfinite(row[spec.FEATURE_MEL]).all()
    assert all(len(s) == 1 for s in splits_of.values()), "a track's segments are in several splits"
    for split in spec.SPLITS:
        in_split = [r for r in rows if r[spec.FEATURE_SPLIT] == split]
        assert md.counts[split]["segments"] == len(in_split)
        assert md.counts[split]["tracks"] == len({r[spec.FEATURE_TRACK_ID] for r in in_split})
        for label, c in md.counts[split]["by_label"].items():
            assert c["segments"] == sum(r[spec.FEATURE_LABEL] == label for r in in_split)
    assert md.inputs["matched"] == md.inputs["featurized"] + md.inputs["failed"]
    assert md.inputs["failed"] == sum(md.failures.values())


def only_the_committed_run(out):
    """The output folder holds metadata.json and the one run folder it names, nothing else."""
    md = read_metadata(str(out))
    return sorted(os.listdir(out)) == sorted(["metadata.json", f"run_id={md.run_id}"])


# Plain helpers -------------------------------------------------------------------------------------
def test_group_into_shards_keeps_each_track_in_one_shard_and_writes_empty_shards():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from transforms.shards import GroupIntoShards

    refs = [TrackRef(uri=f"/d/{i}.wav", track_id=f"g/{i:03d}", split="train" if i % 5 else "test") for i in range(53)]

    def check(fixed):
        def _check(shards):
            by_split = collections.defaultdict(dict)
            for (split, index, n), items in shards:
                assert index not in by_split[split], "a shard key appears twice"
                by_split[split][index] = (n, [r.track_id for r in items])
                assert all(r.split == split for r in items)
            assert set(by_split) == {"train", "test"}  # no tracks, no shards
            placed = sorted(t for s in by_split.values() for _, ids in s.values() for t in ids)
            assert placed == sorted(r.track_id for r in refs)  # every track in exactly one shard
            for split, shards_of in by_split.items():
                n_tracks = sum(r.split == split for r in refs)
                n = fixed or -(-n_tracks // 20)
                assert sorted(shards_of) == list(range(n)), "every shard, empty ones too"
                assert {v[0] for v in shards_of.values()} == {n}
        return _check

    for fixed in (0, 4):
        with TestPipeline() as p:
            shards = (p | beam.Create(refs)
                      | GroupIntoShards(group_fn=lambda r: r.split, id_fn=lambda r: r.track_id,
                                        num_shards=fixed, per_shard=20))
            assert_that(shards, check(fixed))


def test_summary_merges_like_a_single_pass():
    items = [
        ("track", {"track_id": f"t{i}", "split": spec.SPLITS[i % 3], "label": "ab"[i % 2], "segments": i,
                   "seconds": 1.5 * i})
        for i in range(10)
    ] + [("dead", DeadLetter(uri=f"/x/{i}", stage="decode", reason=r, message="m")) for i, r in enumerate("xxy")]
    items += [("input", 13), ("shard", ("train", 2)), ("dead_file", "errors/d-0.jsonl")]
    whole = featurize.empty_summary()
    for item in items:
        featurize.merge_summary(whole, item)
    fn = featurize._SummaryFn()
    halves = [fn.create_accumulator(), fn.create_accumulator()]
    for i, item in enumerate(items):
        fn.add_input(halves[i % 2], item)
    merged = fn.extract_output(fn.merge_accumulators(halves))
    assert json.dumps(merged, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert whole["failures"] == {"x": 2, "y": 1} and whole["featurized"] == 10 and whole["inputs"] == 13
    assert whole["counts"]["train"]["segments"] == 0 + 3 + 6 + 9
    assert whole["num_shards"] == {"train": 2} and whole["dead_letter_files"] == ["errors/d-0.jsonl"]


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_empty_shards_are_valid_files(tmp_path, fmt):
    params = SpectrogramParams(segment_seconds=1.0, segment_hop_seconds=1.0)
    path = str(tmp_path / f"empty{'.tfrecord.gz' if fmt == 'tfrecord' else '.parquet'}")
    out = list(featurize.write_shard([], uri=path, fmt=fmt, params=params, labels=[]))
    assert out == [] and os.path.getsize(path) > 0
    rows = read_tfrecords([path], params) if fmt == "tfrecord" else read_parquet([path])
    assert rows == []
    if fmt == "parquet":
        assert pq.read_schema(path).field(spec.FEATURE_MEL).type.list_size == np.prod(params.mel_shape)


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_shard_writers_round_trip(tmp_path, fmt):
    params = SpectrogramParams(segment_seconds=1.0, segment_hop_seconds=1.0)
    rng = np.random.default_rng(0)
    mels = rng.normal(size=(70, *params.mel_shape)).astype(np.float32)  # > one Parquet row group
    rows = make_rows(mels, params=params, track_id="t", uri="/t.wav", label="rock", label_index=2, split="test")
    path = str(tmp_path / ("s.tfrecord.gz" if fmt == "tfrecord" else "s.parquet"))
    writer = open_shard_writer(path, fmt=fmt, params=params)
    writer.write(rows[:30])
    writer.write(rows[30:])
    writer.close()
    back = read_tfrecords([path], params) if fmt == "tfrecord" else read_parquet([path])
    assert len(back) == 70
    np.testing.assert_array_equal(np.stack([r[spec.FEATURE_MEL] for r in back]), mels)
    assert [r[spec.FEATURE_SEGMENT_INDEX] for r in back] == list(range(70))
    assert isinstance(writer, TFRecordShardWriter) == (fmt == "tfrecord")


# End to end ----------------------------------------------------------------------------------------
def librosa_reference(path, params, start):
    """Log-mel of samples [start, start+n) of ``path``, zero-padded to a segment, by librosa."""
    import librosa

    y, _ = librosa.load(path, sr=params.sample_rate, mono=True)
    seg = np.zeros(params.segment_samples, np.float32)
    piece = y[start : start + params.segment_samples]
    seg[: len(piece)] = piece
    S = librosa.feature.melspectrogram(y=seg, sr=params.sample_rate, n_fft=params.n_fft,
                                       hop_length=params.hop_length, n_mels=params.n_mels)
    return librosa.power_to_db(S, ref=1.0, amin=params.amin, top_db=params.top_db)


@pytest.mark.slow
def test_tfrecord_end_to_end_matches_librosa(tmp_path, gtzan_tree):
    root, files = gtzan_tree
    out = str(tmp_path / "out")
    # no --segment-hop-seconds: the default hop, half the segment (segments overlap by half)
    result = featurize.run(["--input", f"{root}/**/*", "--output", out, "--format", "tfrecord",
                            "--num-shards", "2", "--segment-seconds", "1", *IN_PROCESS])
    md, rows = read_dataset(out)
    check_consistent(md, rows)
    assert result.metadata.to_dict()["counts"] == md.to_dict()["counts"]
    assert md.labels == ["blues", "jazz", "rock"]
    assert md.inputs == {"matched": 6, "featurized": 6, "failed": 0}
    assert md.spectrogram.segment_hop_seconds == 0.5
    # every format decoded; 2.5 s -> 1 s segments starting at 0, 0.5, 1 and 1.5 s (the last ends at 2.5 s)
    assert len(rows) == 6 * 4
    assert sum(md.counts[s]["tracks"] for s in spec.SPLITS) == 6
    for row in rows:
        assert row[spec.FEATURE_LABEL] == files[row[spec.FEATURE_URI]]
    # the stored log-mel equals librosa's, including the zero-padded tail segment
    wav = next(p for p in files if p.endswith(".wav"))
    params = md.spectrogram
    for row in (r for r in rows if r[spec.FEATURE_URI] == wav):
        start = int(round(row[spec.FEATURE_START_SECONDS] * params.sample_rate))
        assert start == row[spec.FEATURE_SEGMENT_INDEX] * params.segment_hop_samples
        np.testing.assert_allclose(row[spec.FEATURE_MEL], librosa_reference(wav, params, start), atol=2e-3)
    assert md.dead_letters == [f"run_id={md.run_id}/errors/dead_letters-00000-of-00001.jsonl"]
    assert os.path.getsize(os.path.join(out, md.dead_letters[0])) == 0
    assert only_the_committed_run(out)


@pytest.mark.slow
def test_parquet_end_to_end_on_default_multiprocess_runner(tmp_path, make_gtzan_tree):
    root = tmp_path / "corpus"
    make_gtzan_tree(root, genres=("disco", "metal", "pop"), per_genre=4, seconds=1.5, formats=("wav", "flac"))
    out = str(tmp_path / "out")
    result = featurize.run(["--input", f"{root}/*/*.wav", "--input", f"{root}/**.flac", "--output", out,
                            "--format", "parquet", "--split", "0.5,0.25,0.25", "--num-shards", "4", *SHORT])
    assert result.runner == "FnApiRunner"
    md, rows = read_dataset(out)
    check_consistent(md, rows)
    assert md.inputs == {"matched": 12, "featurized": 12, "failed": 0}
    assert len(rows) == 12 * 2  # 1 full segment + a 0.5 s tail (exactly half a segment: kept)
    for split in spec.SPLITS:
        names = md.shard_names(split)
        expected = 4 if md.counts[split]["tracks"] else 0
        assert len(names) == expected and all(f"-of-{expected:05d}.parquet" in n for n in names)
        assert all(os.path.exists(os.path.join(out, n)) for n in names)
    assert only_the_committed_run(out)
    assert md.extra["split_fractions"] == [0.5, 0.25, 0.25]


@pytest.mark.slow
def test_manifest_split_column_wins_and_rerun_replaces_output(tmp_path, make_gtzan_tree):
    files = make_gtzan_tree(tmp_path / "c", genres=("a", "b"), per_genre=3, seconds=1.0)
    manifest = tmp_path / "tracks.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uri", "label", "split", "track_id"])
        for i, path in enumerate(sorted(files)):
            w.writerow([path, files[path].upper(), ["test", "validation", ""][i % 3], f"id{i}"])
    out = str(tmp_path / "out")
    featurize.run(["--manifest", str(manifest), "--output", out, "--format", "tfrecord", "--split", "1,0,0",
                   *SHORT, *IN_PROCESS])
    featurize.run(["--manifest", str(manifest), "--output", out, "--format", "parquet", "--split", "1,0,0",
                   *SHORT, *IN_PROCESS])
    md, rows = read_dataset(out)
    check_consistent(md, rows)
    assert md.format == "parquet" and only_the_committed_run(out)  # the first run's folder is gone
    assert md.labels == ["A", "B"]
    by_track = {r[spec.FEATURE_TRACK_ID]: r[spec.FEATURE_SPLIT] for r in rows}
    assert by_track == {f"id{i}": ["test", "validation", "train"][i % 3] for i in range(6)}


@pytest.mark.slow
def test_failed_runs_commit_nothing_and_the_next_run_cleans_up(tmp_path, gtzan_tree, write_audio, monkeypatch):
    root, _ = gtzan_tree
    out = str(tmp_path / "out")
    common = ["--input", f"{root}/**", "--output", out, *SHORT, *IN_PROCESS]
    featurize.run([*common, "--num-shards", "2"])
    before = read_metadata(out)
    before_rows = read_dataset(out)[1]

    def unchanged():
        md, rows = read_dataset(out)
        assert md.to_dict() == before.to_dict() and len(rows) == len(before_rows)

    # 1. the pipeline fails
    def broken_writer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(featurize, "open_shard_writer", broken_writer)
    with pytest.raises(Exception, match="disk full"):
        featurize.run([*common, "--num-shards", "3"])
    unchanged()
    monkeypatch.undo()

    # 2. the commit itself fails (e.g. the network drops while writing metadata.json)
    def broken_metadata(*args, **kwargs):
        raise OSError("network down")

    monkeypatch.setattr(featurize, "write_metadata", broken_metadata)
    with pytest.raises(OSError, match="network down"):
        featurize.run([*common, "--num-shards", "3"])
    unchanged()
    monkeypatch.undo()
    # each run starts by removing uncommitted run folders: the committed one and the last failed one remain
    assert len([n for n in os.listdir(out) if n.startswith("run_id=")]) == 2

    # 3. more failures than --max-error-fraction: exit 1, nothing committed (regression: it used to
    #    replace a good dataset with an empty one)
    for path in root.rglob("*.*"):
        path.write_bytes(b"not audio any more")
    assert featurize.main([*common, "--num-shards", "3"]) == 1
    unchanged()

    # 4. the next good run commits and removes the leftover run folders (killed runs included)
    killed = tmp_path / "out" / "run_id=20200101T000000Z-0badf00d"
    killed.mkdir()
    (killed / "train-00000-of-00009.parquet").write_bytes(b"partial")
    (tmp_path / "out" / "_staging-20200101T000000-deadbeef").mkdir()  # a killed run of an older version
    (tmp_path / "out" / "errors").mkdir()  # an older version's dead letters, directly in the output
    (tmp_path / "out" / "errors" / dead_letter_name(0, 1)).write_text("")
    write_audio(tmp_path / "fresh" / "rock" / "x.wav", seconds=2.0)
    featurize.run(["--input", str(tmp_path / "fresh"), "--output", out, *SHORT, *IN_PROCESS])
    assert only_the_committed_run(out)


@pytest.mark.slow
def test_output_name_with_glob_characters_touches_no_other_dataset(tmp_path, gtzan_tree):
    root, _ = gtzan_tree
    common = ["--input", f"{root}/**", *SHORT, *IN_PROCESS]
    featurize.run([*common, "--output", str(tmp_path / "out1")])
    first = sorted(os.listdir(tmp_path / "out1"))
    weird = str(tmp_path / "out[12]")
    featurize.run([*common, "--output", weird])
    featurize.run([*common, "--output", weird])  # its cleanup of older runs is where a glob would bite
    assert sorted(os.listdir(tmp_path / "out1")) == first
    assert only_the_committed_run(weird) and only_the_committed_run(tmp_path / "out1")


@pytest.mark.slow
def test_output_inside_the_input_folder_is_not_read_back(tmp_path, make_gtzan_tree):
    root = tmp_path / "corpus"
    make_gtzan_tree(root, genres=("a", "b"), per_genre=2, seconds=1.0)
    out = str(root / "features")
    for _ in range(2):
        featurize.run(["--input", str(root), "--output", out, "--format", "parquet", *SHORT, *IN_PROCESS])
        md = read_metadata(out)
        assert md.labels == ["a", "b"] and md.inputs["matched"] == 4


@pytest.mark.slow
def test_adding_a_collection_changes_no_existing_track_id_or_split(tmp_path, make_gtzan_tree):
    make_gtzan_tree(tmp_path / "cat1", genres=("rock", "jazz"), per_genre=5, seconds=1.0)
    make_gtzan_tree(tmp_path / "cat2", genres=("rock", "jazz"), per_genre=5, seconds=1.0)  # same file names
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    featurize.run(["--input", f"{tmp_path}/cat1/**", "--output", one, "--format", "parquet", *SHORT, *IN_PROCESS])
    featurize.run(["--input", f"{tmp_path}/cat1/**", "--input", f"{tmp_path}/cat2/**", "--output", two,
                   "--format", "parquet", *SHORT, *IN_PROCESS, "--max-error-fraction", "0.6"])
    before = {(r[spec.FEATURE_URI], r[spec.FEATURE_TRACK_ID], r[spec.FEATURE_SPLIT]) for r in read_dataset(one)[1]}
    md, rows = read_dataset(two)
    after = {(r[spec.FEATURE_URI], r[spec.FEATURE_TRACK_ID], r[spec.FEATURE_SPLIT]) for r in rows}
    assert before <= after  # cat1's tracks keep their ids and splits
    # cat2 repeats cat1's relative paths: each repeat is a dead letter, never a silent overwrite
    assert md.inputs == {"matched": 20, "featurized": 10, "failed": 10}
    assert md.failures == {"duplicate_track_id": 10}


@pytest.mark.slow
def test_real_recordings_featurize_without_failure(tmp_path, shared_audio):
    gtzan = shared_audio / "gtzan-dev"
    out = str(tmp_path / "out")
    # one clip per genre (GTZAN layout -> label) plus a few short librosa-data recordings (16 kHz
    # mono speech, 44.1 kHz stereo music, a 2.7 s clip) with awkward names, picked by a brace set
    librosa_data = f"{shared_audio}/librosa-data/{{198,3436,5703,456440,sorohanro}}*.ogg"
    featurize.run(["--input", f"{gtzan}/*/*.00000.wav", "--input", librosa_data,
                   "--output", out, "--format", "parquet", "--max-error-fraction", "0", *IN_PROCESS])
    md, rows = read_dataset(out)
    check_consistent(md, rows)
    genres = sorted(p.name for p in gtzan.iterdir() if p.is_dir())
    n_ogg = 5
    assert md.inputs == {"matched": len(genres) + n_ogg, "featurized": len(genres) + n_ogg, "failed": 0}
    assert md.labels == sorted(genres + ["librosa-data"])
    for genre in genres:
        tracks = {r[spec.FEATURE_TRACK_ID] for r in rows if r[spec.FEATURE_LABEL] == genre}
        assert tracks == {f"{genre}/{genre}.00000.wav"}
    # a 30 s GTZAN clip makes nineteen 3 s segments, one every 1.5 s (the default: overlapping by
    # half), the last starting at 27 s (its ~0.01 s tail is dropped)
    assert sum(r[spec.FEATURE_LABEL] == "blues" for r in rows) == 19


# The shared per-track function and PTransform (reused by the label job) ----------------------------
def test_featurize_track_reads_any_fsspec_uri_and_fails_with_reasons(tmp_path, write_audio):
    import uuid

    import fsspec

    from transforms.audio import AudioError
    from transforms.beam_audio import featurize_track

    params = SpectrogramParams(segment_seconds=1.0, segment_hop_seconds=1.0)
    local = write_audio(tmp_path / "rock" / "a.flac", seconds=2.6, sample_rate=44100, channels=2)
    uri = f"memory://featurize-{uuid.uuid4().hex}/rock/a.flac"
    with fsspec.open(uri, "wb") as f:
        f.write(local.read_bytes())
    for source in (str(local), uri):
        feats = featurize_track(TrackRef(uri=source, track_id="rock/a.flac", label="rock"), params=params)
        assert feats.mels.shape == (3, *params.mel_shape) and feats.mels.dtype == np.float32
        assert feats.starts == [0, 22050, 44100]
        assert abs(feats.duration_seconds - 2.6) < 1e-3 and len(feats.content_hash) == 16
    with pytest.raises(AudioError) as err:
        featurize_track(TrackRef(uri=str(tmp_path / "missing.wav"), track_id="x"), params=params)
    assert (err.value.reason, err.value.stage) == ("read_error", "read")
    with pytest.raises(AudioError) as err:  # the extension is checked before any read
        featurize_track(TrackRef(uri=str(tmp_path / "missing.m4a"), track_id="x"), params=params)
    assert err.value.reason == "unsupported_format"


def test_audio_to_log_mel_transform_tags_features_and_dead_letters(tmp_path, write_audio):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.options import pipeline_options
    from transforms.beam_audio import AudioToLogMel

    params = SpectrogramParams(segment_seconds=1.0, segment_hop_seconds=1.0)
    good = [str(write_audio(tmp_path / f"g{i}.wav", seconds=1.0 + i)) for i in range(2)]
    (tmp_path / "bad.wav").write_bytes(b"RIFF....")
    refs = [TrackRef(uri=u, track_id=os.path.basename(u)) for u in [*good, str(tmp_path / "bad.wav")]]
    with beam.Pipeline(options=pipeline_options(["--direct_running_mode=in_memory"])) as p:
        out = p | beam.Create(refs) | AudioToLogMel(params=params)
        shapes = out.features | "Shapes" >> beam.Map(lambda f: (f.ref.track_id, f.mels.shape))
        reasons = out.dead_letters | "Reasons" >> beam.Map(lambda d: (d.track_id, d.reason))
        assert_that(shapes, equal_to([("g0.wav", (1, *params.mel_shape)), ("g1.wav", (2, *params.mel_shape))]),
                    label="features")
        assert_that(reasons, equal_to([("bad.wav", "decode_error")]), label="dead_letters")


@pytest.mark.slow
def test_fixed_vocabulary_sample_and_limit(tmp_path, make_gtzan_tree):
    root = tmp_path / "corpus"
    make_gtzan_tree(root, genres=("a", "b", "c"), per_genre=4, seconds=1.0)
    out = str(tmp_path / "out")
    featurize.run(["--input", str(root), "--output", out, "--format", "parquet", "--labels", "b,a",
                   "--max-error-fraction", "0.5", *SHORT, *IN_PROCESS])
    md, rows = read_dataset(out)
    check_consistent(md, rows)
    assert md.labels == ["a", "b"] and md.failures == {"unknown_label": 4}  # c's tracks: dead letters
    assert md.inputs == {"matched": 12, "featurized": 8, "failed": 4}

    featurize.run(["--input", str(root), "--output", out, "--format", "parquet", "--sample", "0.5",
                   "--limit", "3", *SHORT, *IN_PROCESS])
    md, rows = read_dataset(out)
    from transforms.sources import unit_hash

    ids = sorted(f"{g}/{g}.{i:05d}.wav" for g in "abc" for i in range(4))
    expected = [t for t in ids if unit_hash(t) < 0.5][:3]  # the sample, then the smallest ids
    assert sorted({r[spec.FEATURE_TRACK_ID] for r in rows}) == expected and md.inputs["matched"] == 3
