"""metadata.json and model.json: round trips through files (local and memory://), clear errors."""

from __future__ import annotations

import dataclasses
import json
import uuid

import fsspec
import pytest

from genreflow import __version__
from transforms.metadata import (
    METADATA_FILE,
    MODEL_CARD_FILE,
    DatasetMetadata,
    ModelCard,
    read_metadata,
    read_model_card,
    utc_now,
    write_metadata,
    write_model_card,
)
from transforms.storage import write_json_atomic
from transforms.spec import SpectrogramParams, schema_to_json

PARAMS = SpectrogramParams(n_mels=64, fmax=8000.0)


def dataset_metadata() -> DatasetMetadata:
    by_label = {"blues": {"tracks": 2, "segments": 20, "seconds": 60.0},
                "jazz": {"tracks": 1, "segments": 10, "seconds": 30.0}}
    return DatasetMetadata(
        spectrogram=PARAMS,
        labels=["blues", "jazz"],
        format="parquet",
        shards={"train": ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"],
                "validation": ["validation-00000-of-00001.parquet"], "test": []},
        counts={"train": {"tracks": 3, "segments": 30, "seconds": 90.0, "by_label": by_label}},
        inputs={"matched": 5, "featurized": 3, "failed": 2},
        failures={"decode_error": 1, "too_short": 1},
        extra={"runner": "FnApiRunner"},
    )


def model_card() -> ModelCard:
    return ModelCard(
        model_file="model.keras",
        model_version="0123456789abcdef",
        labels=["blues", "jazz"],
        spectrogram=PARAMS,
        input_shape=list(PARAMS.mel_shape),
        embedding_layer="embedding",
        data_fingerprint="feedbeef",
        metrics={"accuracy": 0.5, "per_class": {"blues": 0.4}},
        inference_batch_size=32,
    )


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    path = f"memory://genreflow-test-{uuid.uuid4().hex}/out"
    yield path
    fs = fsspec.filesystem("memory")
    fs.rm(path.split("://", 1)[1].split("/")[0], recursive=True)


def makedirs(root: str) -> None:
    fs, path = fsspec.core.url_to_fs(root)
    fs.makedirs(path, exist_ok=True)


def listing(root: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(root)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def test_dataset_metadata_round_trip(root):
    makedirs(root)
    md = dataset_metadata()
    path = write_metadata(root, md)
    assert path.endswith("/" + METADATA_FILE)
    back = read_metadata(root)
    assert back.genreflow_version == __version__  # filled in on write
    assert dataclasses.replace(back, genreflow_version="") == md
    assert back.spectrogram.digest() == PARAMS.digest()
    assert listing(root) == [METADATA_FILE]  # no temporary file left behind

    with fsspec.open(path, "r") as f:
        raw = json.load(f)
    assert raw["schema"] == schema_to_json(PARAMS)
    assert raw["spectrogram"] == PARAMS.to_dict()
    assert raw["genreflow_version"] and raw["format_version"] == 1
    assert raw["created"].endswith("Z")


def test_run_folder_datasets_store_shard_counts_not_names(root):
    makedirs(root)
    md = dataclasses.replace(dataset_metadata(), shards={}, run_id="20261201T101500Z-1a2b3c4d",
                             num_shards={"train": 3, "test": 1},
                             dead_letters=["run_id=20261201T101500Z-1a2b3c4d/errors/dead_letters-00000-of-00001.jsonl"])
    write_metadata(root, md)
    with fsspec.open(f"{root}/{METADATA_FILE}", "r") as f:
        raw = json.load(f)
    assert "shards" not in raw and raw["num_shards"] == {"train": 3, "test": 1}  # size independent of the data
    back = read_metadata(root)
    assert back.shard_names("train") == [f"run_id={md.run_id}/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert back.shard_names("validation") == [] and back.splits() == ["test", "train"]
    assert back.shard_paths(root, "test") == [f"{root}/run_id={md.run_id}/test-00000-of-00001.parquet"]
    # a dataset written before run folders still reads: explicit names
    old = dataset_metadata()
    assert old.shard_paths("/d", "train") == ["/d/train-00000-of-00002.parquet", "/d/train-00001-of-00002.parquet"]


def test_model_card_round_trip(root):
    makedirs(root)
    card = model_card()
    write_model_card(root, card)
    back = read_model_card(root)
    assert back.genreflow_version == __version__
    assert dataclasses.replace(back, genreflow_version="") == card
    # a card written before inference_batch_size existed reads as "not recorded"
    old = {k: v for k, v in card.to_dict().items() if k != "inference_batch_size"}
    assert ModelCard.from_dict(old).inference_batch_size == 0
    back.spectrogram.check_compatible(dataset_metadata().spectrogram, what="data")
    assert listing(root) == [MODEL_CARD_FILE]


def test_rewrite_replaces_the_file(root):
    makedirs(root)
    md = dataset_metadata()
    write_metadata(root, md)
    md.labels = ["blues", "jazz", "rock"]
    write_metadata(root, md)
    assert read_metadata(root).labels == ["blues", "jazz", "rock"]
    assert listing(root) == [METADATA_FILE]


def test_missing_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_metadata(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and METADATA_FILE in message and "featurize" in message


def test_missing_model_card_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_model_card(str(tmp_path / "nope"))
    assert MODEL_CARD_FILE in str(info.value) and "genreflow train" in str(info.value)


def test_missing_in_memory_filesystem():
    with pytest.raises(FileNotFoundError, match=METADATA_FILE):
        read_metadata(f"memory://genreflow-absent-{uuid.uuid4().hex}")


def test_metadata_with_other_spectrogram_params_is_detected(tmp_path):
    md = dataset_metadata()
    md.spectrogram = SpectrogramParams(n_mels=96)
    write_metadata(str(tmp_path), md)
    with pytest.raises(ValueError, match="n_mels"):
        model_card().spectrogram.check_compatible(read_metadata(str(tmp_path)).spectrogram)


def test_write_json_atomic_leaves_no_tmp(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(str(path), {"a": [1, 2], "b": "ü"})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": "ü"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_utc_now_format():
    import datetime

    stamp = utc_now()
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - parsed).total_seconds()) < 60
