"""SpectrogramParams and the feature schema: serialisation, digests, validation, sizes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from transforms import spec
from transforms.spec import ParameterMismatchError, SpectrogramParams, feature_schema

NON_DEFAULT = SpectrogramParams(
    sample_rate=16000,
    n_fft=1024,
    hop_length=256,
    n_mels=64,
    fmin=30.0,
    fmax=7600.0,
    segment_seconds=2.5,
    segment_hop_seconds=1.25,
    log="log1p",
    amin=1e-8,
    top_db=None,
    min_tail_fraction=0.25,
)


@pytest.mark.parametrize("params", [SpectrogramParams(), NON_DEFAULT], ids=["default", "custom"])
def test_dict_round_trip_through_json(params):
    data = json.loads(json.dumps(params.to_dict()))
    back = SpectrogramParams.from_dict(data)
    assert back == params
    assert back.digest() == params.digest()
    assert set(data) == {f.name for f in dataclasses.fields(SpectrogramParams)}


def test_from_dict_rejects_unknown_keys():
    data = SpectrogramParams().to_dict()
    data["window"] = "hamming"
    with pytest.raises(ValueError, match="window"):
        SpectrogramParams.from_dict(data)


def test_digest_same_in_a_fresh_process():
    code = (
        "from transforms.spec import SpectrogramParams as P;"
        "print(P().digest(), P(n_mels=64, fmax=8000.0).digest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert out == [
        SpectrogramParams().digest(),
        SpectrogramParams(n_mels=64, fmax=8000.0).digest(),
    ]


def test_digest_distinguishes_every_field():
    base = SpectrogramParams()
    changed = {
        "sample_rate": 16000,
        "n_fft": 1024,
        "hop_length": 256,
        "n_mels": 64,
        "fmin": 20.0,
        "fmax": 8000.0,
        "segment_seconds": 2.0,
        "segment_hop_seconds": 1.5,
        "log": "log1p",
        "amin": 1e-6,
        "top_db": 60.0,
        "min_tail_fraction": 0.75,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(SpectrogramParams)}
    prints = {base.digest()}
    for name, value in changed.items():
        prints.add(dataclasses.replace(base, **{name: value}).digest())
    assert len(prints) == len(changed) + 1


def test_equal_params_given_as_int_or_float_have_one_digest():
    a = SpectrogramParams()
    b = SpectrogramParams(fmin=0, segment_seconds=3, top_db=80, n_mels=np.int64(128))
    assert a == b
    assert a.to_dict() == b.to_dict()
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert a.digest() == b.digest()
    assert type(b.n_mels) is int and type(b.fmin) is float


def test_check_compatible_names_every_differing_field():
    a = SpectrogramParams()
    a.check_compatible(SpectrogramParams())  # equal: no error
    b = SpectrogramParams(n_mels=64, hop_length=256)
    with pytest.raises(ParameterMismatchError) as info:
        a.check_compatible(b, what="model")
    message = str(info.value)
    assert "model" in message
    assert "n_mels: 128 != 64" in message
    assert "hop_length: 512 != 256" in message
    for untouched in ("sample_rate", "n_fft", "fmin", "top_db"):
        assert untouched not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 22050.5}, "sample_rate"),
        ({"n_fft": -1}, "n_fft"),
        ({"n_fft": "2048"}, "n_fft"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"segment_seconds": -3.0}, "segment_seconds"),
        ({"segment_seconds": 0.0}, "segment_seconds"),
        ({"segment_hop_seconds": 0.0}, "segment_hop_seconds"),
        ({"fmin": -1.0}, "fmin"),
        ({"fmax": 20000.0}, "fmax"),
        ({"fmin": 4000.0, "fmax": 3000.0}, "fmin"),
        ({"fmin": float("nan")}, "fmin"),
        # issue 12, item 10: fmin above Nyquist with the default fmax, absurd mel counts and rates
        ({"fmin": 12000.0}, "need 0 <= fmin < fmax <= sample_rate/2 = 11025 Hz"),
        ({"fmin": 11025.0}, "fmin"),
        ({"sample_rate": 16000, "fmin": 9000.0}, "sample_rate/2 = 8000 Hz"),
        ({"n_mels": 100000}, "n_mels 100000 is more mel bands than the 1025 FFT bins"),
        ({"n_fft": 256, "n_mels": 130}, "129 FFT bins"),
        ({"sample_rate": 10**9}, "sample_rate must be in (0, 768000]"),
        ({"log": "ln"}, "log"),
        ({"min_tail_fraction": 0.0}, "min_tail_fraction"),
        ({"min_tail_fraction": 1.5}, "min_tail_fraction"),
        ({"segment_seconds": 0.01}, "half an FFT window"),
        ({"top_db": True}, "top_db"),
    ],
)
def test_invalid_params_rejected(kwargs, fragment):
    with pytest.raises(ValueError, match="invalid spectrogram parameters") as info:
        SpectrogramParams(**kwargs)
    assert fragment in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ValueError) as info:
        SpectrogramParams(sample_rate=-1, log="ln")
    assert "sample_rate" in str(info.value) and "log" in str(info.value)


def test_derived_sizes():
    p = SpectrogramParams()
    assert p.segment_samples == 3 * 22050
    assert p.segment_hop_samples == 3 * 22050
    assert p.min_tail_samples == 33075
    assert p.effective_fmax == 11025.0
    assert p.mel_shape == (128, p.n_frames)
    assert SpectrogramParams(fmax=8000.0).effective_fmax == 8000.0
    assert SpectrogramParams(segment_seconds=1.0, min_tail_fraction=0.3).min_tail_samples == 6615


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"n_fft": 1024, "hop_length": 256, "n_mels": 64},
        {"hop_length": 500, "segment_seconds": 2.9},
        {"sample_rate": 16000, "hop_length": 160, "n_fft": 400, "segment_seconds": 1.0},
        {"hop_length": 441, "segment_seconds": 0.5},
    ],
)
def test_n_frames_matches_librosa(kwargs):
    import librosa

    p = SpectrogramParams(**kwargs)
    y = np.zeros(p.segment_samples, np.float32)
    S = librosa.feature.melspectrogram(
        y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels
    )
    assert S.shape == p.mel_shape


def test_feature_schema_and_json():
    p = NON_DEFAULT
    schema = feature_schema(p)
    names = [f.name for f in schema]
    assert names[0] == spec.FEATURE_MEL
    assert set(names) == {
        spec.FEATURE_MEL,
        spec.FEATURE_MEL_SHAPE,
        spec.FEATURE_TRACK_ID,
        spec.FEATURE_URI,
        spec.FEATURE_SEGMENT_INDEX,
        spec.FEATURE_START_SECONDS,
        spec.FEATURE_LABEL,
        spec.FEATURE_LABEL_INDEX,
        spec.FEATURE_SPLIT,
    }
    assert len(names) == len(set(names))
    mel = schema[0]
    assert mel.dtype == "float32" and mel.shape == (64, p.n_frames)
    as_json = json.loads(json.dumps(spec.schema_to_json(p)))
    assert [d["name"] for d in as_json] == names
    assert as_json[0]["shape"] == [64, p.n_frames]
    assert all(d["dtype"] in ("float32", "int64", "string") for d in as_json)
    assert spec.SPLITS == ("train", "validation", "test")
