"""``genreflow demo``: the whole product on generated music, in one command.

::

    genreflow demo --output DIR [--quick]

Steps, each announced with its progress, on the local runner:

1. **synth**: a labeled training collection ``DIR/collection`` in mixed formats (:mod:`pipelines.synth`);
2. **featurize**: ``DIR/collection`` -> log-mel shards ``DIR/features`` (:mod:`pipelines.featurize`);
3. **train**: a CNN ``DIR/model`` (:mod:`training.train`);
4. **catalog**: held-out tracks (30 s) made with another seed, in the same formats, plus a few broken
   files, ``DIR/catalog``;
5. **label**: the catalog -> ``DIR/labels/run_date=YYYY-MM-DD/`` (:mod:`pipelines.label`);
6. **report**: ``DIR/report/``: ``gallery.png`` (one log-mel per style), ``training_curves.png``,
   ``confusion.png`` (catalog, track level), ``labels.csv`` (every catalog track: true style,
   predicted genre, score) and ``summary.json``.

It ends with a summary a person reads in ten seconds: tracks per step, dead letters, track accuracy on
the held-out catalog and where each output lives.  A failing step stops the demo with a message that
names it (exit status 1).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from genreflow.args import report_error
from pipelines import synth
from pipelines.synth_styles import STYLE_NAMES

__all__ = [
    "DemoConfig",
    "DEFAULT",
    "QUICK",
    "DemoStepError",
    "catalog_accuracy",
    "plot_gallery",
    "run_demo",
    "format_summary",
    "run",
    "main",
]

logger = logging.getLogger(__name__)

#: Audio formats of the demo collection and catalog, cycled over the clips.
DEMO_FORMATS = ("wav", "flac", "ogg", "mp3")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run.

    Attributes
    ----------
    output : str
        Folder for everything the demo writes (local path).
    styles : tuple of str
        Styles to generate and learn.
    clips_per_style, catalog_clips_per_style : int
        Training collection and held-out catalog sizes per style.
    seconds : float
        Length of the training clips in seconds (3 s segments: 10 s gives 3 per clip).
    catalog_seconds : float
        Length of the catalog tracks in seconds (30 s, a GTZAN clip, gives 10 segments, whose mean
        probabilities label the track).
    formats : tuple of str
        Audio formats cycled over the clips of both the collection and the catalog: the model is
        trained on the encodings it will label.
    epochs : int
        Training epochs.
    corrupt : int
        Broken files added to the catalog (they must come out as dead letters).
    seed, catalog_seed : int
        Seeds of the collection and of the catalog (different: the catalog is new music).
    workers : int or None
        Synth worker processes (default: all cores).
    train_args : tuple of str
        Extra ``genreflow train`` options; none by default: the demo trains the default recipe.
    """

    output: str
    styles: tuple[str, ...] = STYLE_NAMES
    clips_per_style: int = 100
    catalog_clips_per_style: int = 10
    seconds: float = 10.0
    catalog_seconds: float = 30.0
    formats: tuple[str, ...] = DEMO_FORMATS
    epochs: int = 15
    corrupt: int = 4
    seed: int = 0
    catalog_seed: int = 1000
    workers: int | None = None
    train_args: tuple[str, ...] = ()


#: The defaults: all styles, 1,000 clips of 10 s, 100 catalog tracks of 30 s + 4 broken files.
DEFAULT = {}
#: ``--quick``: a small run (2 min 17 s on 2 cores, 77% on its 30-track catalog) that shows every step working.
QUICK = {"clips_per_style": 24, "catalog_clips_per_style": 3, "seconds": 6.0, "catalog_seconds": 12.0, "epochs": 20,
         "corrupt": 3}


class DemoStepError(RuntimeError):
    """A demo step failed; ``step`` names it and the message says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step


def _brace(formats: Sequence[str]) -> str:
    """``("wav", "mp3")`` -> ``"{wav,mp3}"`` (a glob brace set; a single format needs no braces)."""
    return formats[0] if len(formats) == 1 else "{" + ",".join(formats) + "}"


# Report pieces (plain functions) ---------------------------------------------------------------
def catalog_accuracy(rows: Sequence[Mapping[str, Any]], truth: Mapping[str, str], *,
                     labels: Sequence[str]) -> dict[str, Any]:
    """Join label rows with the catalog's true styles and score them.

    Parameters
    ----------
    rows : sequence of mapping
        Label rows with ``track_id``, ``genre``, ``score`` (and ``uri``).
    truth : mapping of str to str
        ``{track_id: true style}`` of the good catalog tracks.
    labels : sequence of str
        Label vocabulary (confusion matrix order).

    Returns
    -------
    dict
        ``accuracy`` (correct / all true tracks: a track without a label row counts as wrong),
        ``correct``, ``tracks``, ``labeled``, ``missing`` (true tracks without a row), ``unexpected``
        (rows for tracks not in ``truth``, e.g. broken files that got a label), ``confusion``
        (int array ``(n_labels, n_labels)``, rows = true, over labeled tracks) and ``joined`` (one
        dict per true track: ``track_id``, ``uri``, ``true``, ``predicted``, ``score``, ``correct``).
    """
    index = {name: i for i, name in enumerate(labels)}
    by_id = {str(r["track_id"]): r for r in rows}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    joined = []
    for track_id in sorted(truth):
        true = truth[track_id]
        row = by_id.get(track_id)
        predicted = str(row["genre"]) if row is not None else ""
        if row is not None and true in index and predicted in index:
            confusion[index[true], index[predicted]] += 1
        joined.append({
            "track_id": track_id, "uri": str(row.get("uri", "")) if row is not None else "", "true": true,
            "predicted": predicted, "score": float(row["score"]) if row is not None else float("nan"),
            "correct": bool(row is not None and predicted == true),
        })
    correct = sum(j["correct"] for j in joined)
    return {
        "accuracy": correct / len(truth) if truth else float("nan"),
        "correct": correct,
        "tracks": len(truth),
        "labeled": sum(1 for t in truth if t in by_id),
        "missing": sorted(t for t in truth if t not in by_id),
        "unexpected": sorted(t for t in by_id if t not in truth),
        "confusion": confusion,
        "joined": joined,
    }


def plot_gallery(examples: Mapping[str, str], *, params: Any, path: str) -> str:
    """One log-mel spectrogram (the first segment) per style, in a grid.

    Parameters
    ----------
    examples : mapping of str to str
        ``{style: audio file path}``.
    params : transforms.spec.SpectrogramParams
        The features' parameters (the model's input).
    path : str
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from transforms.audio import load_mono, segment_audio
    from transforms.spectrogram import log_mel, mel_filter

    mel = mel_filter(params)
    n = len(examples)
    cols = min(5, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (style, audio_path) in zip(axes.flat, sorted(examples.items())):
        with open(audio_path, "rb") as f:
            y = load_mono(f.read(), params=params, name=audio_path)
        spec = log_mel(segment_audio(y, params=params)[:1], mel=mel)[0]
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, params.segment_seconds, 0, params.n_mels))
        ax.set_title(f"{style}  ({os.path.basename(audio_path)})", fontsize=9)
    fig.suptitle(f"log-mel spectrograms ({params.n_mels} mel bands x {params.segment_seconds:g} s), one per style")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _write_labels_csv(path: str, joined: Sequence[Mapping[str, Any]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["track_id", "uri", "true", "predicted", "score", "correct"],
                                lineterminator="\n")
        writer.writeheader()
        for row in joined:
            writer.writerow({**row, "score": f"{row['score']:.4f}"})
    return path


# Steps -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Progress:
    total: int
    done: int = 0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def step(self, name: str, what: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {name}: {what}", flush=True)
        started = time.perf_counter()
        try:
            result = fn()
        except DemoStepError:
            raise
        except SystemExit as e:  # argparse inside a step
            raise DemoStepError(name, f"exited with status {e.code}") from e
        except Exception as e:
            raise DemoStepError(name, f"{type(e).__name__}: {e}") from e
        self.timings[name] = time.perf_counter() - started
        print(f"[{self.done}/{self.total}] {name}: done in {self.timings[name]:.0f} s", flush=True)
        return result


def _check(step: str, condition: bool, message: str) -> None:
    if not condition:
        raise DemoStepError(step, message)


FOLDERS = ("collection", "features", "model", "catalog", "labels", "report")


@dataclasses.dataclass
class _DemoRun:
    """One demo run: its config, folders (``paths``, one per step) and what each step returned so far."""

    cfg: DemoConfig
    paths: dict[str, str]
    run_date: str
    progress: _Progress = dataclasses.field(default_factory=lambda: _Progress(total=6))
    results: dict[str, Any] = dataclasses.field(default_factory=dict)

    def synth(self) -> Any:
        cfg = self.cfg
        return synth.write_collection(self.paths["collection"], styles=cfg.styles, clips_per_style=cfg.clips_per_style,
                                      seconds=cfg.seconds, formats=cfg.formats, seed=cfg.seed, workers=cfg.workers)

    def featurize(self, collection_glob: str) -> Any:
        from pipelines import featurize
        from transforms.metadata import read_metadata

        result = featurize.run(["--input", collection_glob, "--output", self.paths["features"]])
        md = read_metadata(self.paths["features"])
        _check("featurize", md.inputs["featurized"] > 0 and bool(md.shard_names("train")),
               f"no training shards in {self.paths['features']}")
        print(featurize.format_summary(result), flush=True)
        return md

    def train(self) -> tuple[dict[str, Any], Any]:
        from training import train
        from transforms.metadata import read_model_card

        model_dir = self.paths["model"]
        summary = train.run(["--data", self.paths["features"], "--model-dir", model_dir, "--epochs",
                             str(self.cfg.epochs), "--verbose", "2", *self.cfg.train_args])
        card = read_model_card(model_dir)
        _check("train", os.path.exists(os.path.join(model_dir, card.model_file)), f"no model file in {model_dir}")
        return summary, card

    def catalog(self) -> Any:
        cfg = self.cfg
        return synth.write_collection(self.paths["catalog"], styles=cfg.styles,
                                      clips_per_style=cfg.catalog_clips_per_style, seconds=cfg.catalog_seconds,
                                      formats=cfg.formats, seed=cfg.catalog_seed, corrupt=cfg.corrupt,
                                      workers=cfg.workers)

    def label(self, catalog: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from pipelines import label
        from transforms import label_store

        extensions = sorted({f.uri.rsplit(".", 1)[-1] for f in (*catalog.tracks, *catalog.corrupt)})
        pattern = os.path.join(self.paths["catalog"], "**." + _brace(extensions))
        # the catalog's broken files are there on purpose (3 of 19 files in the CI run): they must
        # become dead letters, not fail the run at the default --max-error-fraction of 0.1
        manifest = label.run(["--input", pattern, "--model-dir", self.paths["model"], "--output", self.paths["labels"],
                              "--run-date", self.run_date, "--format", "parquet", "--no-skip-labeled",
                              "--max-error-fraction", "0.5"])
        table = label_store.read_labels(self.paths["labels"], run_date=self.run_date)
        _check("label", table.num_rows > 0, f"no label rows in {self.paths['labels']}")
        return manifest, table.select(["track_id", "uri", "genre", "score"]).to_pylist()

    def report(self, *, catalog: Any, label_rows: list[dict[str, Any]], card: Any) -> tuple[dict, dict[str, str]]:
        from training import plots

        report, model_dir = self.paths["report"], self.paths["model"]
        os.makedirs(report, exist_ok=True)
        scores = catalog_accuracy(label_rows, catalog.labels, labels=card.labels)
        first: dict[str, str] = {}
        for t in catalog.tracks:
            first.setdefault(t.label, t.path)
        files = {"gallery": plot_gallery(first, params=card.spectrogram, path=os.path.join(report, "gallery.png"))}
        curves = os.path.join(model_dir, "training_curves.png")
        if os.path.exists(curves):
            files["training_curves"] = shutil.copy(curves, os.path.join(report, "training_curves.png"))
        else:
            logger.warning("the trainer wrote no %s", curves)
        files["confusion"] = plots.plot_confusion(
            scores["confusion"], labels=card.labels, path=os.path.join(report, "confusion.png"),
            title=f"held-out catalog, track level: {scores['correct']}/{scores['tracks']} correct")
        files["labels"] = _write_labels_csv(os.path.join(report, "labels.csv"), scores["joined"])
        return scores, files


def _fresh_folders(output: str) -> dict[str, str]:
    """``{step: OUTPUT/<step>}`` for every step's folder, each removed if a previous run left it."""
    root = os.path.abspath(output)
    paths = {name: os.path.join(root, name) for name in FOLDERS}
    os.makedirs(root, exist_ok=True)
    for stale in paths.values():  # a rerun starts from scratch
        shutil.rmtree(stale, ignore_errors=True)
    return paths


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every step; returns the summary (also written to ``report/summary.json``).

    Raises
    ------
    DemoStepError
        Naming the step that failed.
    """
    from transforms.storage import write_json_atomic

    started = time.perf_counter()
    run = _DemoRun(cfg, _fresh_folders(cfg.output), datetime.datetime.now(datetime.timezone.utc).date().isoformat())
    paths, step, n_styles = run.paths, run.progress.step, len(cfg.styles)
    r = run.results
    r["synth"] = step("synth", f"{n_styles} styles x {cfg.clips_per_style} clips of {cfg.seconds:g} s -> "
                               f"{paths['collection']}", run.synth)
    collection_glob = os.path.join(paths["collection"], "**." + _brace(cfg.formats))
    r["featurize"] = step("featurize", f"{collection_glob} -> log-mel shards {paths['features']}",
                          lambda: run.featurize(collection_glob))
    train_segments = r["featurize"].counts.get("train", {}).get("segments", "?")
    r["train"] = step("train", f"CNN on {train_segments} segments, {cfg.epochs} epochs -> {paths['model']}", run.train)
    r["catalog"] = step(
        "catalog", f"{n_styles} styles x {cfg.catalog_clips_per_style} new tracks of {cfg.catalog_seconds:g} s "
                   f"(seed {cfg.catalog_seed}, {','.join(cfg.formats)}) + {cfg.corrupt} broken files "
                   f"-> {paths['catalog']}", run.catalog)
    catalog = r["catalog"]
    r["label"] = step("label", f"{len(catalog.tracks) + len(catalog.corrupt)} catalog files -> {paths['labels']}",
                      lambda: run.label(catalog))
    r["report"] = step("report", f"gallery, curves, confusion matrix, labels -> {paths['report']}",
                       lambda: run.report(catalog=catalog, label_rows=r["label"][1], card=r["train"][1]))
    summary = _summary(run, seconds=time.perf_counter() - started)
    write_json_atomic(os.path.join(paths["report"], "summary.json"), summary)
    return summary


def _summary(run: _DemoRun, *, seconds: float) -> dict[str, Any]:
    """``report/summary.json``: the config, what each step did and took, the catalog accuracy, the outputs."""
    from transforms import label_store

    cfg, r, timings = run.cfg, run.results, run.progress.timings
    metadata, (train_summary, card), catalog = r["featurize"], r["train"], r["catalog"]
    (label_run, _), (scores, files) = r["label"], r["report"]
    return {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "styles": list(cfg.styles),
        "steps": {
            "synth": {"tracks": len(r["synth"].tracks), "seconds": round(timings["synth"], 1)},
            "featurize": {"inputs": metadata.inputs["matched"], "featurized": metadata.inputs["featurized"],
                          "dead_letters": metadata.inputs["failed"],
                          "segments": {s: c.get("segments", 0) for s, c in metadata.counts.items()},
                          "seconds": round(timings["featurize"], 1)},
            "train": {"epochs": cfg.epochs, "metrics": train_summary.get("metrics", {}),
                      "model_version": card.model_version, "seconds": round(timings["train"], 1)},
            "catalog": {"tracks": len(catalog.tracks), "corrupt": len(catalog.corrupt),
                        "seconds": round(timings["catalog"], 1)},
            "label": {"inputs": label_run["counts"]["inputs"], "labeled": label_run["counts"]["labeled"],
                      "dead_letters": label_run["counts"]["dead_letters"], "failures": label_run["failures"],
                      "seconds": round(timings["label"], 1)},
        },
        "catalog_accuracy": {k: scores[k] for k in ("accuracy", "correct", "tracks", "labeled", "missing",
                                                     "unexpected")},
        "chance": 1.0 / len(cfg.styles),
        "outputs": {**run.paths, "labels_partition": label_store.partition_dir(run.paths["labels"], run.run_date),
                    "report_files": {k: os.path.basename(v) for k, v in files.items()}},
        "seconds": round(seconds, 1),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The ten-second read: tracks per step, dead letters, accuracy, where things are."""
    s, acc, out = summary["steps"], summary["catalog_accuracy"], summary["outputs"]
    minutes, seconds = divmod(int(round(summary["seconds"])), 60)
    train_metrics = s["train"]["metrics"] or {}
    val = train_metrics.get("track_accuracy")
    lines = [
        "",
        f"genreflow demo finished in {minutes}:{seconds:02d}",
        f"  synth      {s['synth']['tracks']:>5} clips in {len(summary['styles'])} styles",
        f"  featurize  {s['featurize']['featurized']:>5} tracks -> {sum(s['featurize']['segments'].values())} "
        f"segments, {s['featurize']['dead_letters']} dead letters",
        f"  train      {s['train']['epochs']:>5} epochs"
        + (f", track accuracy on its own test split {val:.1%}" if val is not None else ""),
        f"  catalog    {s['catalog']['tracks']:>5} new tracks of {summary['config']['catalog_seconds']:g} s + "
        f"{s['catalog']['corrupt']} broken files",
        f"  label      {s['label']['labeled']:>5} labeled, {s['label']['dead_letters']} dead letters "
        f"{json.dumps(s['label']['failures'])}",
        f"  ACCURACY on the held-out catalog: {acc['accuracy']:.1%} ({acc['correct']}/{acc['tracks']} tracks; "
        f"chance {summary['chance']:.0%})",
        "  outputs:",
        f"    model    {out['model']}",
        f"    labels   {out['labels_partition']}",
        f"    report   {out['report']}/  ({', '.join(sorted(out['report_files'].values()))}, summary.json)",
    ]
    return "\n".join(lines)


# CLI -------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="genreflow demo",
        description="synth -> featurize -> train -> label a held-out catalog -> report, on generated music, "
                    "all on this machine.",
    )
    p.add_argument("--output", default="demo-output", help="folder for everything the demo writes "
                                                           "(default demo-output)")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                   help="a small run (about 2-3 minutes on 2 cores) instead of the full demo")
    p.add_argument("--styles", default=None, help="comma-separated styles (default: all)")
    p.add_argument("--clips-per-style", type=int, default=None,
                   help=f"training clips per style (default {DemoConfig.clips_per_style})")
    p.add_argument("--catalog-clips-per-style", type=int, default=None,
                   help=f"catalog tracks per style (default {DemoConfig.catalog_clips_per_style})")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"training clip length in seconds (default {DemoConfig.seconds:g})")
    p.add_argument("--catalog-seconds", type=float, default=None,
                   help=f"catalog track length in seconds (default {DemoConfig.catalog_seconds:g})")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated audio formats of the collection and the catalog "
                        f"(default {','.join(DemoConfig.formats)})")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DemoConfig.epochs})")
    p.add_argument("--corrupt", type=int, default=None, help="broken files added to the catalog (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training collection (default 0)")
    p.add_argument("--workers", type=int, default=None, help="synth worker processes (default: all cores)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> DemoConfig:
    """Build the :class:`DemoConfig` of a command line (defaults, ``--quick``, explicit options)."""
    args = _parser().parse_args(argv)
    values: dict[str, Any] = dict(QUICK if args.quick else DEFAULT)
    for name in ("clips_per_style", "catalog_clips_per_style", "seconds", "catalog_seconds", "epochs", "corrupt"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.formats:
        values["formats"] = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if args.styles:
        values["styles"] = tuple(s.strip() for s in args.styles.split(",") if s.strip())
    return DemoConfig(output=args.output, seed=args.seed, catalog_seed=args.seed + 1000, workers=args.workers,
                      **values)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` and run the demo; returns the summary."""
    return run_demo(config_from_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: run, print the summary; exit status 1 naming the failed step."""
    from genreflow.logs import configure_logging

    configure_logging()  # also when called from Python: the steps' Beam and TF chatter stays quiet
    cfg = config_from_args(argv)
    print(f"genreflow demo: writing to {os.path.abspath(cfg.output)}", flush=True)
    try:
        summary = run_demo(cfg)
    except DemoStepError as e:
        print(file=sys.stderr)
        return report_error("genreflow demo", f"{e} (stopped; outputs so far are in {os.path.abspath(cfg.output)})",
                            status=1)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
