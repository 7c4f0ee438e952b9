"""The commit protocol and the storage under it (transforms.commit, transforms.storage): run folders,
URIs, atomic JSON, file hashes and local copies, and deletes that never glob a path."""

from __future__ import annotations

import os
import uuid

import fsspec
import pytest

from transforms import commit, storage


@pytest.fixture(params=["local", "memory"])
def base(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return f"memory://commit-{uuid.uuid4().hex}"


def _touch(uri: str) -> None:
    with fsspec.open(uri, "wb") as f:
        f.write(b"x")


def test_deletes_take_a_bracketed_output_literally(base):
    fs, _ = fsspec.core.url_to_fs(base)
    keep_id, old_id = "20261201T000000Z-00000001", "20261201T000000Z-00000002"
    for out in ("out1", "out2", "out[12]"):
        for run_id in (keep_id, old_id):
            _touch(storage.join_uri(commit.run_folder(storage.join_uri(base, out), run_id), "sub", "shard"))
    weird = storage.join_uri(base, "out[12]")
    assert commit.run_folders(weird) == [keep_id, old_id]
    assert commit.remove_other_runs(weird, keep=[keep_id]) == [old_id]
    assert commit.run_folders(weird) == [keep_id]
    for out in ("out1", "out2"):  # a glob of out[12] would have matched these
        assert commit.run_folders(storage.join_uri(base, out)) == [keep_id, old_id]
        assert fs.exists(fsspec.core.url_to_fs(storage.join_uri(base, out, f"run_id={old_id}", "sub", "shard"))[1])


def test_write_json_atomic_replaces_whole_and_leaves_no_temporary(base):
    path = storage.join_uri(base, "d", "record.json")
    storage.write_json_atomic(path, {"a": 1})
    storage.write_json_atomic(path, {"a": 2, "b": [1, 2]})
    assert storage.read_json(path) == {"a": 2, "b": [1, 2]}
    fs, folder = fsspec.core.url_to_fs(storage.join_uri(base, "d"))
    assert [os.path.basename(p) for p in fs.ls(folder, detail=False)] == ["record.json"]


def test_put_file_atomic_uploads_whole_and_leaves_no_partial(base, tmp_path):
    local = tmp_path / "model.bin"
    local.write_bytes(bytes(range(256)) * 64)
    path = storage.join_uri(base, "m", "model.bin")
    storage.put_file_atomic(str(local), path)
    assert storage.file_sha256(path) == storage.file_sha256(str(local))
    fs, folder = fsspec.core.url_to_fs(storage.join_uri(base, "m"))
    assert [os.path.basename(p) for p in fs.ls(folder, detail=False)] == ["model.bin"]


def test_run_ids_sort_by_start_time():
    import datetime

    early = commit.new_run_id(datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.timezone.utc))
    late = commit.new_run_id(datetime.datetime(2026, 12, 1, 2, 1, tzinfo=datetime.timezone.utc))
    assert early < late and early.startswith("20261201T020000Z-") and len(early) == 25


def test_uri_helpers_join_split_and_name_protocols():
    assert storage.join_uri("s3://b/out/", "run_id=x", "a.json") == "s3://b/out/run_id=x/a.json"
    assert storage.join_uri("/", "a") == "/a" and storage.join_uri("rel", "a") == "rel/a"
    assert storage.split_protocol("gs://b/k/x.wav") == ("gs", "b/k/x.wav")
    assert storage.split_protocol("/data/x.wav") == ("", "/data/x.wav")
    assert [storage.protocol_of(u) for u in ("/x", "file:///x", "LOCAL://x", "memory://x", "S3://b")] == [
        "file", "file", "file", "memory", "s3"]
    assert storage.is_local("file:///x") and not storage.is_local("memory://x")


def test_file_sha256_and_local_copy_of_a_memory_file(tmp_path):
    import hashlib

    data = os.urandom(3 << 20)  # more than one 1 MiB block
    uri = f"memory://storage-{uuid.uuid4().hex}/model.keras"
    with fsspec.open(uri, "wb") as f:
        f.write(data)
    assert storage.file_sha256(uri) == hashlib.sha256(data).hexdigest()
    with storage.local_copy(uri) as local:
        assert local.endswith(".keras") and open(local, "rb").read() == data
    assert not os.path.exists(local)  # the copy is removed
    path = tmp_path / "m.keras"
    path.write_bytes(b"x")
    with storage.local_copy(str(path)) as local:
        assert local == str(path)
    assert path.exists()  # a local file is used in place, never removed
    fs = fsspec.filesystem("memory")
    (listed,) = fs.ls(uri.split("://", 1)[1].rsplit("/", 1)[0], detail=False)
    back = storage.listed_uri(fs, listed)  # the protocol put back: the URI opens the same file
    assert back.startswith("memory://") and fsspec.core.url_to_fs(back)[1] == listed
    assert storage.listed_uri(fsspec.filesystem("file"), str(path)) == str(path)
