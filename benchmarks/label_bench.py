"""Benchmark of the label job: tracks per second per core, split by stage, against a plain loop.

Run by hand (not a test)::

    .venv/bin/python benchmarks/label_bench.py --tracks 24 --workdir /tmp/label-bench

It writes ``--tracks`` 30 s clips (22,050 Hz mono 16-bit WAV, GTZAN's shape) in a GTZAN layout,
builds the trainer's ``small`` CNN (``training.model.build_model``, untrained weights: speed does
not depend on them) into a model dir with default spectrogram parameters (128 mel bands, 3 s
segments: 10 segments per clip), and times, on one core (TensorFlow limited to one thread,
``scipy.fft`` already single-threaded, one Beam worker):

1. a plain Python loop over the files: ``featurize_track`` (read + decode + resample + log-mel),
   the model on the track's segments, aggregation, and one Parquet write at the end, each stage
   timed separately;
2. the same loop with the model called on batches of ``--batch`` segments across tracks (what
   RunInference does);
3. ``genreflow label`` itself on Beam's in-process FnApiRunner with one worker; its model time
   comes from RunInference's ``inference_batch_latency_micro_secs`` metric;
4. the skip-labeled join (:func:`history_bench`): reading an earlier partition of
   ``--history-rows`` rows, and the join with ``--join-inputs`` tracks on one worker.

It prints a Markdown table; paste it into benchmarks/label_results.md with the command.
"""

from __future__ import annotations

import os

# One core: set before TensorFlow is imported.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_audio(root: str, *, tracks: int, seconds: float, sample_rate: int = 22050) -> list[str]:
    """``tracks`` clips of tones + noise in ``root/<genre>/<genre>.0000i.wav``."""
    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i in range(tracks):
        genre = GENRES[i % len(GENRES)]
        os.makedirs(os.path.join(root, genre), exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * (110 * (1 + i % 7)) * t) + 0.05 * rng.standard_normal(t.size)
        path = os.path.join(root, genre, f"{genre}.{i:05d}.wav")
        sf.write(path, y.astype(np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def make_model_dir(model_dir: str, *, arch: str):
    """The trainer's CNN with default spectrogram parameters, or (``arch`` = ``musicnn-msd`` /
    ``musicnn-mtt``) the ``train --backbone`` model (pretrained musicnn + an untrained head) with
    the ``musicnn`` preset, saved as a model dir.  ``ARCH/hopS`` (e.g. ``hybrid/hop1.5``) sets the
    segment hop to ``S`` seconds: overlapping segments, more of them per track."""
    from training.model import EMBEDDING_LAYER, build_model, make_normalizer
    from transforms.model_dir import new_model_card, write_model_dir
    from transforms.spec import PRESETS, SpectrogramParams

    rng = np.random.default_rng(0)
    arch, _, hop = arch.partition("/hop")
    if arch.startswith("musicnn-"):
        from training import backbone, musicnn

        params = PRESETS["musicnn"]
        features = backbone.feature_model(musicnn.pretrained(arch))
        width = int(features.outputs[0].shape[-1])
        norm = backbone.feature_normalizer(rng.normal(size=(8, width)))
        model = backbone.join(features, backbone.build_head(n_classes=len(GENRES), normalizer=norm), name=arch)
    else:
        params = SpectrogramParams(segment_hop_seconds=float(hop) if hop else None)
        norm = make_normalizer()
        norm.adapt(rng.normal(-30, 15, (8,) + params.mel_shape).astype(np.float32))
        model = build_model(input_shape=params.mel_shape, n_classes=len(GENRES), arch=arch, normalizer=norm)
    card = new_model_card(labels=GENRES, spectrogram=params, embedding_layer=EMBEDDING_LAYER)
    card = write_model_dir(model_dir, model=model, card=card)
    return card, model.count_params()


def plain_loop(pattern: str, *, model_dir: str, out: str, batch: int | None) -> dict[str, float]:
    """Label the files ``pattern`` matches without Beam; returns seconds per stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.label import label_row
    from transforms import label_store
    from transforms.beam_audio import featurize_track
    from transforms.inference import PROBABILITIES, load_segment_model
    from transforms.model_dir import load_model_card, model_file_path
    from transforms.sources import TrackRef, refs_from_pattern
    from transforms.spectrogram import mel_filter

    card = load_model_card(model_dir)
    model = load_segment_model(model_file_path(model_dir, card))
    mel = mel_filter(card.spectrogram)
    model(np.zeros((1,) + card.spectrogram.mel_shape, np.float32))  # trace once, outside the timing
    at = datetime.datetime.now(datetime.timezone.utc)
    times = {"decode+spectrogram": 0.0, "model": 0.0, "aggregate+write": 0.0}
    feats = []
    rows = []

    def infer(items):
        t = time.perf_counter()
        stacked = np.concatenate([f.mels for f in items])
        probs = model(stacked)[PROBABILITIES]
        times["model"] += time.perf_counter() - t
        t = time.perf_counter()
        i = 0
        for f in items:
            n = len(f.mels)
            preds = [(j, {PROBABILITIES: probs[i + j]}) for j in range(n)]
            i += n
            rows.append(label_row(track_id=f.ref.track_id, uri=f.ref.uri, fingerprint=f.ref.listing,
                                  content_hash=f.content_hash, duration_seconds=f.duration_seconds,
                                  predictions=preds, card=card, labeled_at=at, top_k=3))
        times["aggregate+write"] += time.perf_counter() - t

    pending, n_pending = [], 0
    for ref in (r for r in refs_from_pattern(pattern) if isinstance(r, TrackRef)):
        t = time.perf_counter()
        f = featurize_track(ref, params=card.spectrogram, mel=mel)
        times["decode+spectrogram"] += time.perf_counter() - t
        if batch is None:
            infer([f])
            continue
        pending.append(f)
        n_pending += len(f.mels)
        if n_pending >= batch:
            infer(pending)
            pending, n_pending = [], 0
    if pending:
        infer(pending)
    t = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=label_store.label_schema()), os.path.join(out, "part.parquet"),
                   compression="zstd")
    times["aggregate+write"] += time.perf_counter() - t
    del feats
    return times


def beam_job(paths_glob: str, *, model_dir: str, out: str, batch: int, limit: int | None = None) -> dict:
    from pipelines import label

    t = time.perf_counter()
    extra = ["--limit", str(limit)] if limit else []
    manifest = label.run(["--input", paths_glob, "--model-dir", model_dir, "--output", out, "--run-date",
                          "2026-01-01", *extra, "--no-skip-labeled", "--max-batch-size", str(batch), "--runner",
                          "FnApiRunner", "--direct_running_mode", "in_memory", "--direct_num_workers", "1"])
    manifest["wall_seconds"] = time.perf_counter() - t
    return manifest


def _expect(count: int, *, expected: int, what: str) -> None:
    if count != expected:
        raise AssertionError(f"{what}: {count} tracks, expected {expected}")


def history_bench(workdir: str, *, rows: int, inputs: int) -> dict[str, float]:
    """Time the skip join's reading of history and the join itself.

    One earlier committed partition of ``rows`` label rows (realistic ids and fingerprints, constant
    values elsewhere: only three columns are read) and

    1. :func:`transforms.label_store.labeled_keys` over its part file: what one worker does per
       earlier part file (read three columns, keep this model version, emit the pairs);
    2. :class:`pipelines.label.SkipLabeled` on Beam's FnApiRunner (one worker) with ``inputs``
       tracks, all of them in the history with the same fingerprint (all skipped): the whole join,
       history shuffled by track id.
    """
    import apache_beam as beam
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.label import SKIPPED, SkipLabeled
    from transforms import label_store
    from transforms.sources import TrackRef

    out = os.path.join(workdir, "history")
    partition = label_store.partition_dir(out, "2026-01-01")
    name = "run_id=20260101T000000Z-00000000/part-00000-of-00001.parquet"
    os.makedirs(os.path.dirname(os.path.join(partition, name)))
    ids = [f"{GENRES[i % 10]}/track-{i:09d}.mp3" for i in range(rows)]
    fps = [f"size:{3_000_000 + i}:mtime:{1_700_000_000 + i}.0" for i in range(rows)]
    table = pa.table({"track_id": ids, "uri": ["gs://catalog/" + t for t in ids], "fingerprint": fps,
                      "model_version": ["0123456789abcdef"] * rows})
    pq.write_table(table, os.path.join(partition, name), compression="zstd")
    label_store.commit_partition(partition, {"run_id": "20260101T000000Z-00000000", "files": {"rows": [name]}})
    size = os.path.getsize(os.path.join(partition, name))

    t = time.perf_counter()
    n = sum(1 for _ in label_store.labeled_keys(os.path.join(partition, name), model_version="0123456789abcdef"))
    read = time.perf_counter() - t
    assert n == rows

    refs = [TrackRef(uri="gs://catalog/" + ids[i], track_id=ids[i], listing=fps[i]) for i in range(inputs)]
    options = beam.options.pipeline_options.PipelineOptions(
        ["--runner", "FnApiRunner", "--direct_running_mode", "in_memory", "--direct_num_workers", "1"])
    t = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        checked = p | beam.Create(refs) | SkipLabeled(output_dir=out, run_date="2026-01-02",
                                                      model_version="0123456789abcdef")
        _ = (checked[SKIPPED] | "CountSkipped" >> beam.combiners.Count.Globally()
             | "CheckSkipped" >> beam.Map(_expect, expected=inputs, what="skipped"))
        _ = (checked["todo"] | "CountTodo" >> beam.combiners.Count.Globally()
             | "CheckTodo" >> beam.Map(_expect, expected=0, what="to label"))
    join = time.perf_counter() - t
    return {"rows": rows, "inputs": inputs, "parquet_mb": size / 1e6, "read_s": read, "join_s": join}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracks", type=int, default=24, help="number of 30 s clips (default 24)")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length in seconds (default 30)")
    p.add_argument("--arch", nargs="+", default=["small"],
                   help="trainer architectures, or musicnn-msd / musicnn-mtt for the `train --backbone` model; "
                        "ARCH/hopS sets a segment hop of S seconds (hybrid/hop1.5); "
                        "several are timed one after the other in one run (default small)")
    p.add_argument("--batch", type=int, default=256, help="segments per model call for batched runs (default 256)")
    p.add_argument("--history-rows", type=int, default=1_000_000,
                   help="rows of the earlier partition for the skip-join timing (default 1,000,000; 0 skips it)")
    p.add_argument("--join-inputs", type=int, default=10_000,
                   help="tracks joined against that history in the skip-join timing (default 10,000)")
    p.add_argument("--workdir", default="/tmp/genreflow-label-bench", help="scratch folder (deleted first)")
    args = p.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    audio = os.path.join(args.workdir, "audio")
    make_audio(audio, tracks=args.tracks, seconds=args.seconds)
    for arch in args.arch:
        model_dir = os.path.join(args.workdir, arch.replace("/", "-"), "model")
        card, n_params = make_model_dir(model_dir, arch=arch)

        work = os.path.join(args.workdir, arch.replace("/", "-"))
        per_track = plain_loop(f"{audio}/*/*.wav", model_dir=model_dir, out=os.path.join(work, "loop1"), batch=None)
        batched = plain_loop(f"{audio}/*/*.wav", model_dir=model_dir, out=os.path.join(work, "loop2"), batch=args.batch)
        one = beam_job(f"{audio}/*/*.wav", model_dir=model_dir, out=os.path.join(work, "beam1"), batch=args.batch, limit=1)
        job = beam_job(f"{audio}/*/*.wav", model_dir=model_dir, out=os.path.join(work, "beam"), batch=args.batch)
        assert job["counts"]["labeled"] == args.tracks, job["counts"]

        n = args.tracks
        load = os.getloadavg()
        print(f"\n{n} clips x {args.seconds:g} s, model {arch} ({n_params} parameters), "
              f"{card.spectrogram.mel_shape} log-mel per {card.spectrogram.segment_seconds:g} s segment; "
              f"one core; load average at the end {load[0]:.1f} on {os.cpu_count()} cores\n")
        print("| run | decode+spectrogram s | model s | aggregate+write s | total s | tracks/s/core | model share |")
        print("|---|---|---|---|---|---|---|")
        for name, t in (("plain loop, model per track (all its segments)", per_track),
                        (f"plain loop, model on {args.batch}-segment batches", batched)):
            total = sum(t.values())
            print(f"| {name} | {t['decode+spectrogram']:.2f} | {t['model']:.2f} | {t['aggregate+write']:.2f} | "
                  f"{total:.2f} | {n / total:.2f} | {t['model'] / total:.0%} |")
        model_s = job["timings"]["inference_seconds"]
        pipe = job["timings"]["pipeline_seconds"]
        print(f"| genreflow label (Beam FnApiRunner, 1 worker, max batch {args.batch}) | "
              f"(in pipeline) | {model_s:.2f} | (in pipeline) | {pipe:.2f} pipeline, {job['wall_seconds']:.2f} wall | "
              f"{n / pipe:.2f} | {model_s / pipe:.0%} |")
        marginal = (job["timings"]["pipeline_seconds"] - one["timings"]["pipeline_seconds"]) / (n - 1)
        print(f"| genreflow label, marginal (pipeline({n}) - pipeline(1)) / {n - 1} | | | | "
              f"{marginal:.3f} per track | {1 / marginal:.2f} | |")
        print("\n_run.json timings:", json.dumps(job["timings"]))
        print("1-track run timings:", json.dumps(one["timings"]))
    if args.history_rows:
        h = history_bench(args.workdir, rows=args.history_rows, inputs=args.join_inputs)
        print(f"\nskip join: {h['rows']:,} earlier rows ({h['parquet_mb']:.1f} MB Parquet): labeled_keys reads them in "
              f"{h['read_s']:.2f} s ({h['rows'] / h['read_s']:,.0f} rows/s); SkipLabeled with {h['inputs']:,} inputs "
              f"(all skipped) on one worker: {h['join_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
