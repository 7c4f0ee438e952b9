"""featurize against a real S3 protocol server: moto's standalone server on loopback, through s3fs.

Configured exactly as a user would point genreflow at MinIO or another S3-compatible store: the
standard AWS environment variables, with ``AWS_ENDPOINT_URL`` overriding the endpoint.
"""

from __future__ import annotations

import glob
import os
import urllib.request

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from pipelines import featurize  # noqa: E402
from transforms import spec  # noqa: E402
from transforms.metadata import read_metadata  # noqa: E402
from transforms.records import table_to_rows, tf_feature_description  # noqa: E402
from conftest import free_port  # noqa: E402

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


@pytest.fixture
def s3(monkeypatch):
    """An empty bucket ``genreflow-test`` on a moto server; yields an s3fs filesystem."""
    import s3fs

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in process-wide state: start every test from an empty store
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"),
                           timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FSSPEC_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("genreflow-test")
    try:
        yield fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.mark.slow
def test_featurize_reads_and_writes_s3(tmp_path, s3, gtzan_tree, make_bad_files, monkeypatch):
    root, files = gtzan_tree
    bad = make_bad_files(tmp_path / "extra")
    corrupt = next(p for p, reason in bad.items() if reason == "decode_error")
    s3.put(str(root), "genreflow-test/corpus", recursive=True)
    s3.put(corrupt, "genreflow-test/corpus/jazz/corrupt.wav")
    assert len(s3.glob("genreflow-test/corpus/**/*")) >= 7

    params = ["--segment-seconds", "1", "--segment-hop-seconds", "1"]
    out = "s3://genreflow-test/out"
    featurize.run(["--input", "s3://genreflow-test/corpus/**", "--output", out, "--format", "parquet",
                   "--num-shards", "2", "--max-error-fraction", "0.5", *params, *IN_PROCESS])
    md = read_metadata(out)
    assert md.inputs == {"matched": 7, "featurized": 6, "failed": 1}
    assert md.failures == {"decode_error": 1}
    assert md.labels == ["blues", "jazz", "rock"]

    import pyarrow.parquet as pq

    rows = []
    for path in md.shard_paths("genreflow-test/out"):
        rows += table_to_rows(pq.read_table(path, filesystem=s3))
    assert len(rows) == sum(md.counts[s]["segments"] for s in spec.SPLITS) == 6 * 3
    assert {r[spec.FEATURE_URI] for r in rows} == {
        f"s3://genreflow-test/corpus/{os.path.relpath(p, root)}" for p in files
    }
    assert all(md.labels[r[spec.FEATURE_LABEL_INDEX]] == r[spec.FEATURE_LABEL] for r in rows)
    (letters,) = md.dead_letters
    with s3.open(f"genreflow-test/out/{letters}", "r") as f:
        assert '"uri": "s3://genreflow-test/corpus/jazz/corrupt.wav"' in f.read()
    listed = sorted(p.rsplit("/", 1)[-1] for p in s3.ls("genreflow-test/out", refresh=True))
    assert listed == ["metadata.json", f"run_id={md.run_id}"]

    # the same bucket as TFRecord, read back with tf.data after download (TF 2.21 has no s3://)
    out = "s3://genreflow-test/tfr"
    featurize.run(["--input", "s3://genreflow-test/corpus/*/*.{wav,flac,ogg}", "--output", out,
                   "--format", "tfrecord", "--max-error-fraction", "0.5", *params, *IN_PROCESS])
    md = read_metadata(out)
    assert md.inputs == {"matched": 4, "featurized": 3, "failed": 1}
    import tensorflow as tf

    local = tmp_path / "tfr"
    s3.get("genreflow-test/tfr/", str(local), recursive=True)
    paths = md.shard_paths(str(local))
    description = tf_feature_description(md.spectrogram)
    n = 0
    for raw in tf.data.TFRecordDataset(paths, compression_type="GZIP"):
        ex = tf.io.parse_single_example(raw, description)
        assert ex[spec.FEATURE_MEL].shape == (md.spectrogram.n_mels * md.spectrogram.n_frames,)
        n += 1
    assert n == 3 * 3

    # a rerun killed while committing (the metadata.json upload fails), then one over the error
    # threshold: readers keep seeing the first dataset, whole; the next good run cleans up
    before = read_metadata(out)

    def upload_fails(*args, **kwargs):
        raise OSError("connection reset while uploading metadata.json")

    rerun = ["--input", "s3://genreflow-test/corpus/**", "--output", out, "--format", "tfrecord", *params, *IN_PROCESS]
    with monkeypatch.context() as patch, pytest.raises(OSError, match="connection reset"):
        patch.setattr(featurize, "write_metadata", upload_fails)  # not monkeypatch.undo(): the s3 fixture's env stays
        featurize.run([*rerun, "--max-error-fraction", "0.5"])
    assert featurize.main(rerun) == 1  # 1 of 7 failed, above the default 0.1
    after = read_metadata(out)
    assert after.to_dict() == before.to_dict()
    assert all(s3.exists(p) for p in after.shard_paths("genreflow-test/tfr"))
    featurize.run([*rerun, "--max-error-fraction", "0.5"])
    listed = sorted(p.rsplit("/", 1)[-1] for p in s3.ls("genreflow-test/tfr", refresh=True))
    assert listed == ["metadata.json", f"run_id={read_metadata(out).run_id}"]


@pytest.mark.slow
def test_label_reads_and_writes_s3(tmp_path, s3):
    """Audio on s3, labels on s3: commit, the skip join against s3 partitions, a same-date rerun."""
    import scaleout
    from pipelines import label
    from transforms import label_store

    audio = scaleout.make_catalog(str(tmp_path / "audio"))
    model = str(tmp_path / "model")
    scaleout.make_model(model)
    s3.put(str(tmp_path / "audio"), "genreflow-test/catalog", recursive=True)
    out = "s3://genreflow-test/labels"

    def run(date: str) -> dict:
        argv = scaleout.label_argv("s3://genreflow-test/catalog/**/*.wav", model, out, run_date=date)
        return label.run(argv + IN_PROCESS)

    first = run("2026-01-01")
    assert first["counts"] == {"inputs": 5, "labeled": 4, "skipped": 0, "dead_letters": 1, "segments": 10,
                               "balanced": True}
    rows = label_store.read_labels(out).to_pylist()
    assert sorted(r["track_id"] for r in rows) == sorted(
        os.path.relpath(p, tmp_path / "audio") for p in glob.glob(audio) if not p.endswith("corrupt.wav"))
    assert all(r["uri"].startswith("s3://genreflow-test/catalog/") and r["fingerprint"].startswith("etag:")
               for r in rows)
    # the next night skips every track by its ETag; its rerun supersedes it
    second = run("2026-01-02")
    assert (second["counts"]["labeled"], second["counts"]["skipped"]) == (0, 4)
    again = run("2026-01-02")
    assert again["counts"] == second["counts"] and again["run_id"] != second["run_id"]
    assert sorted(s3.ls("genreflow-test/labels/run_date=2026-01-02")) == [
        "genreflow-test/labels/run_date=2026-01-02/_run.json",
        f"genreflow-test/labels/run_date=2026-01-02/run_id={again['run_id']}"]
    assert label_store.read_commit(label_store.partition_dir(out, "2026-01-02"))["run_id"] == again["run_id"]
    with s3.open(f"genreflow-test/labels/run_date=2026-01-01/{first['files']['dead_letters'][0]}", "r") as f:
        assert '"uri": "s3://genreflow-test/catalog/drone/corrupt.wav"' in f.read()


def test_deletes_on_s3_take_a_bracketed_output_literally(s3):
    from transforms import commit

    keep, old = "20261201T000000Z-00000001", "20261201T000000Z-00000002"
    for out in ("out1", "out[12]"):
        for run_id in (keep, old):
            s3.pipe(f"genreflow-test/{out}/run_id={run_id}/sub/shard", b"x")
    assert commit.remove_other_runs("s3://genreflow-test/out[12]", keep=[keep]) == [old]
    s3.invalidate_cache()
    assert commit.run_folders("s3://genreflow-test/out[12]") == [keep]
    assert commit.run_folders("s3://genreflow-test/out1") == [keep, old]  # a glob of out[12] matches out1
