"""Helpers for the scale-out tests (Flink, portable runner, Dataflow dry runs).

A tiny world that every runner can process in seconds: two "genres" of generated tones at 8 kHz,
0.5 s segments with 16 mel bands, one corrupt file (a dead letter on every runner), and an
untrained Keras model of that input shape with a fixed seed (the tests compare runners with each
other, not the model with the truth, so training would only cost time).

Jobs on a real cluster run as ``python -m pipelines.<job>`` subprocesses with a timeout, so that a
hang (a worker that cannot import the package, a lost harness) fails the test instead of blocking CI.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import numpy as np
import soundfile as sf

from tinymodel import save_model_dir, tiny_cnn
from transforms.metadata import ModelCard, read_metadata
from transforms.spec import FEATURE_MEL, FEATURE_SEGMENT_INDEX, FEATURE_TRACK_ID, SpectrogramParams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
SR = 8000
PARAMS = SpectrogramParams(sample_rate=SR, n_fft=256, hop_length=128, n_mels=16,
                           segment_seconds=0.5, segment_hop_seconds=0.5)
SPEC_ARGS = ["--sample-rate", str(SR), "--n-fft", "256", "--hop-length", "128", "--n-mels", "16",
             "--segment-seconds", "0.5", "--segment-hop-seconds", "0.5"]
GENRES = {"drone": 180.0, "whistle": 2400.0}
#: The reference: Beam's local runner in the test process (what DirectRunner falls back to offline).
IN_PROCESS = ["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"]
#: Per-job limit for a subprocess run on a cluster; a hang fails instead of blocking CI.
JOB_TIMEOUT_S = 300


def make_catalog(root: str) -> str:
    """``root/<genre>/<genre>.0000i.wav`` (2 per genre, 1.1-1.6 s) plus ``root/drone/corrupt.wav``.

    Returns the glob that matches all of them.
    """
    for g, (genre, freq) in enumerate(GENRES.items()):
        os.makedirs(os.path.join(root, genre), exist_ok=True)
        for i in range(2):
            rng = np.random.default_rng(10 * g + i)
            t = np.arange(int(SR * (1.1 + 0.5 * i))) / SR
            y = (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            sf.write(os.path.join(root, genre, f"{genre}.{i:05d}.wav"), y, SR)
    with open(os.path.join(root, "drone", "corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    return os.path.join(root, "*", "*.wav")


def make_model(model_dir: str, *, seed: int = 0) -> ModelCard:
    """An untrained CNN over ``PARAMS.mel_shape`` (fixed seed), saved as ``model.keras`` + ``model.json``."""
    import keras

    keras.utils.set_random_seed(seed)
    labels = sorted(GENRES)
    return save_model_dir(tiny_cnn(PARAMS, n_labels=len(labels)), model_dir, labels=labels, params=PARAMS)


def make_world(base: Any) -> dict[str, Any]:
    """The tiny catalog and an untrained model under ``base`` (a pytest tmp folder)."""
    audio = make_catalog(str(base / "audio"))
    model = str(base / "model")
    make_model(model)
    return {"base": base, "audio": audio, "model": model}


def reference_world(base: Any) -> dict[str, Any]:
    """:func:`make_world` plus the reference outputs of both jobs on the in-process FnApiRunner.

    Returns
    -------
    dict
        ``base``, ``audio`` (glob), ``model`` (dir), ``features`` and ``labels`` (reference outputs).
    """
    from pipelines import featurize, label

    w = make_world(base)
    w["features"] = str(base / "ref-features")
    featurize.run(featurize_argv(w["audio"], w["features"], num_shards=2) + IN_PROCESS)
    w["labels"] = str(base / "ref-labels")
    label.run(label_argv(w["audio"], w["model"], w["labels"]) + IN_PROCESS)
    return w


@contextlib.contextmanager
def worker_pool(port: int, log_path: str, *, start_timeout: float = 60) -> Iterator[dict[str, Any]]:
    """Beam's worker pool (``worker_pool_main --service_port=port``) run by this venv's python.

    This is how a cluster node runs Python workers for ``--environment_type EXTERNAL``. The pool
    starts each worker as ``python -c ...`` from PATH: the venv's bin folder comes first, or the
    worker cannot import apache_beam and the pipeline hangs with no error. (Beam's pool listens on
    every interface; the jobs reach it at ``127.0.0.1:port``.)

    Yields
    ------
    dict
        ``port`` and ``log`` (the path of the pool's log; see :func:`workers_started`).

    Raises
    ------
    AssertionError
        When the pool does not accept connections within ``start_timeout`` seconds.
    """
    log = open(log_path, "w+")
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"worker pool did not start on port {port}:\n{log.read()[-4000:]}") from None
                time.sleep(0.5)
        yield {"port": port, "log": log_path}
    finally:
        # The pool and the workers it started share its process group (start_new_session above).
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()


def workers_started(pool: dict[str, Any]) -> int:
    """How many SDK workers the pool of :func:`worker_pool` has started so far."""
    with open(pool["log"]) as f:
        return f.read().count("Starting worker")


def featurize_argv(audio_glob: str, output: str, *, fmt: str = "parquet", num_shards: int = 0) -> list[str]:
    """The featurize job's own options for the tiny world (Beam options are appended by the caller)."""
    return ["--input", audio_glob, "--output", output, "--format", fmt, "--num-shards", str(num_shards),
            "--max-error-fraction", "0.5", *SPEC_ARGS]


def label_argv(audio_glob: str, model_dir: str, output: str, *, run_date: str = "2026-01-02") -> list[str]:
    """The label job's own options for the tiny world."""
    return ["--input", audio_glob, "--model-dir", model_dir, "--output", output, "--run-date", run_date,
            "--min-batch-size", "4", "--max-batch-size", "8", "--max-error-fraction", "0.5"]


def run_job(module: str, argv: list[str], *, timeout: float = JOB_TIMEOUT_S,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m module argv`` with the project venv's python; raises AssertionError with its log on failure.

    Raises
    ------
    AssertionError
        On a non-zero exit or when the job runs longer than ``timeout`` seconds (it is killed).
    """
    cmd = [sys.executable, "-m", module, *argv]
    full_env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-4000:] if isinstance(e.stdout, bytes) else (e.stdout or "")[-4000:]
        err = (e.stderr or b"")[-8000:] if isinstance(e.stderr, bytes) else (e.stderr or "")[-8000:]
        raise AssertionError(f"{module} did not finish in {timeout:.0f} s (a hang?)\n{out}\n{err}") from None
    assert proc.returncode == 0, f"{module} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc


def featurize_rows(output: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every segment row of a featurize output, keyed by ``(track_id, segment_index)``.

    Reads the shards listed in ``metadata.json`` with :func:`transforms.shard_reader.read_dataset_rows`
    (pyarrow for Parquet, tf.data and protobuf for TFRecord), not with the writers under test.
    """
    from transforms.shard_reader import read_dataset_rows

    rows = list(read_dataset_rows(output))
    keyed = {(r[FEATURE_TRACK_ID], int(r[FEATURE_SEGMENT_INDEX])): r for r in rows}
    assert len(keyed) == len(rows), "duplicate (track_id, segment_index) rows"
    return keyed


def dead_letter_uris(output: str, pattern: str | None = None) -> list[str]:
    """Sorted URIs of the dead-letter records of a committed featurize output (``metadata.json``
    lists its files), or of the files ``pattern`` matches below ``output``."""
    uris = []
    paths = (glob.glob(os.path.join(output, pattern)) if pattern is not None
             else [os.path.join(output, name) for name in read_metadata(output).dead_letters])
    for path in paths:
        with open(path) as f:
            uris += [json.loads(line)["uri"] for line in f if line.strip()]
    return sorted(uris)


def assert_same_features(got: str, want: str, *, atol: float = 1e-4) -> None:
    """Two featurize outputs hold the same rows, mels within ``atol`` dB, and the same bookkeeping."""
    g_md, w_md = read_metadata(got), read_metadata(want)
    assert g_md.labels == w_md.labels
    assert g_md.counts == w_md.counts
    assert g_md.inputs == w_md.inputs
    assert g_md.failures == w_md.failures
    assert g_md.num_shards == w_md.num_shards and g_md.shards == w_md.shards
    g_rows, w_rows = featurize_rows(got), featurize_rows(want)
    assert sorted(g_rows) == sorted(w_rows)
    for key, w in w_rows.items():
        g = g_rows[key]
        for field, value in w.items():
            if field == FEATURE_MEL:
                np.testing.assert_allclose(g[FEATURE_MEL], value, atol=atol, rtol=0, err_msg=str(key))
            else:
                assert g[field] == value, (key, field)
    assert dead_letter_uris(got) == dead_letter_uris(want)


def label_rows(output: str) -> dict[str, dict[str, Any]]:
    """Published label rows by track id (``labeled_at`` dropped: it is the run's start time)."""
    from transforms import label_store

    table = label_store.read_labels(output)
    rows = {}
    for row in table.to_pylist():
        row.pop("labeled_at", None)
        rows[row["track_id"]] = row
    return rows


def assert_same_labels(got: str, want: str, *, atol: float = 1e-5) -> None:
    """Two label outputs hold the same tracks, genres and top-k, probabilities within ``atol``."""
    g_rows, w_rows = label_rows(got), label_rows(want)
    assert sorted(g_rows) == sorted(w_rows)
    assert w_rows, "the reference labeled nothing"
    for track_id, w in w_rows.items():
        g = g_rows[track_id]
        for field, value in w.items():
            if field == "probabilities":
                g_p, w_p = dict(g[field]), dict(value)
                assert sorted(g_p) == sorted(w_p)
                np.testing.assert_allclose([g_p[k] for k in sorted(w_p)], [w_p[k] for k in sorted(w_p)],
                                           atol=atol, rtol=0, err_msg=track_id)
            elif field in ("score", "duration_seconds"):
                assert abs(g[field] - value) <= atol, (track_id, field)
            elif field == "top_k":
                assert [k["genre"] for k in g[field]] == [k["genre"] for k in value], track_id
                np.testing.assert_allclose([k["score"] for k in g[field]], [k["score"] for k in value],
                                           atol=atol, rtol=0, err_msg=track_id)
            elif field == "embedding":
                np.testing.assert_allclose(g[field], value, atol=atol, rtol=0, err_msg=track_id)
            else:
                assert g[field] == value, (track_id, field)


def label_run_manifest(output: str) -> dict[str, Any]:
    """The ``_run.json`` of the only published partition of a label output."""
    from transforms import label_store

    partitions = label_store.list_partitions(output)
    assert len(partitions) == 1, partitions
    (part,) = partitions.values()
    with open(os.path.join(part, label_store.RUN_MANIFEST)) as f:
        return json.load(f)
