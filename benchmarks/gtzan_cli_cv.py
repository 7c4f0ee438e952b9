"""Cross-validated accuracy of whole recipes, run exactly as a user runs them: through the CLI.

Not a test: a by-hand check on real music.  For each fold of :func:`gtzan_cv.folds` (fold k tests
the k-th clip of every genre) it writes a manifest (``uri,label,split``: the fold's clips ``test``,
the rest ``train``), runs ``genreflow featurize`` with the recipe's featurize flags and then
``genreflow train`` with its train flags once per seed, and reads the per-track balanced accuracy
on the test clips from the model dir's ``metrics.json`` (what ``train`` computes with the exported
model: mean of segment probabilities per track, as the label job does).

    python benchmarks/gtzan_cli_cv.py --recipe default --recipe musicnn-msd --seeds 0 1 \\
        --out benchmarks/gtzan_cli_results.jsonl

Recipes (``RECIPES``): ``default`` (no flags), ``musicnn-msd`` / ``musicnn-mtt``
(``featurize --preset musicnn`` + ``train --backbone ...``); ``--extra-featurize`` /
``--extra-train`` add flags to every run of a recipe (e.g. ``--segment-hop-seconds 1.5``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gtzan_cv import folds  # noqa: E402

RECIPES = {
    "default": ([], []),
    "musicnn-msd": (["--preset", "musicnn"], ["--backbone", "musicnn-msd"]),
    "musicnn-mtt": (["--preset", "musicnn"], ["--backbone", "musicnn-mtt"]),
}


def clips(root: pathlib.Path) -> tuple[list[str], np.ndarray, list[str]]:
    """``(paths, label index per clip, labels)``, clips sorted within each genre folder."""
    labels = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, y = [], []
    for li, lab in enumerate(labels):
        for f in sorted((root / lab).iterdir()):
            paths.append(str(f.resolve()))
            y.append(li)
    return paths, np.array(y), labels


def genreflow(*argv: str, log: pathlib.Path) -> float:
    """Run ``genreflow ARGV`` (the console script next to this Python); return its wall seconds."""
    exe = pathlib.Path(sys.executable).with_name("genreflow")
    t = time.time()
    with open(log, "a") as f:
        f.write("$ genreflow " + " ".join(argv) + "\n")
        f.flush()
        subprocess.run([str(exe), *argv], check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", default="../shared/audio/gtzan-dev", help="one folder of clips per genre")
    ap.add_argument("--work", default="/tmp/gtzan_cli_cv", help="scratch folder (manifests, data, models, logs)")
    ap.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="recipes to run (repeatable)")
    ap.add_argument("--extra-featurize", default="", help="extra featurize flags for every recipe (one string)")
    ap.add_argument("--extra-train", default="", help="extra train flags for every recipe (one string)")
    ap.add_argument("--tag", default="", help="suffix of the recipe name in the results")
    ap.add_argument("--folds", type=int, default=5, help="number of folds")
    ap.add_argument("--only-folds", type=int, nargs="*", help="run only these fold indexes")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="train seeds")
    ap.add_argument("--out", default=None, help="append one JSON line per recipe to this file")
    args = ap.parse_args()
    paths, y, labels = clips(pathlib.Path(args.audio))
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    for recipe in args.recipe or ["default"]:
        feat_flags = RECIPES[recipe][0] + args.extra_featurize.split()
        train_flags = RECIPES[recipe][1] + args.extra_train.split()
        name = recipe + (f"+{args.tag}" if args.tag else "")
        per_seed: dict[int, list[float]] = {s: [] for s in args.seeds}
        seconds = {"featurize": [], "train": []}
        for f, test in enumerate(folds(y, args.folds)):
            if args.only_folds and f not in args.only_folds:
                continue
            base = work / name.replace("+", "_") / f"fold{f}"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            split = np.array(["train"] * len(paths), dtype=object)
            split[test] = "test"
            (base / "tracks.csv").write_text(
                "uri,label,split\n" + "".join(f"{p},{labels[c]},{s}\n" for p, c, s in zip(paths, y, split))
            )
            seconds["featurize"].append(genreflow(
                "featurize", "--manifest", str(base / "tracks.csv"), "--output", str(base / "data"), *feat_flags, log=log))
            for seed in args.seeds:
                model_dir = base / f"model-seed{seed}"
                seconds["train"].append(genreflow(
                    "train", "--data", str(base / "data"), "--model-dir", str(model_dir), "--seed", str(seed),
                    "--verbose", "0", *train_flags, log=log))
                metrics = json.loads((model_dir / "metrics.json").read_text())
                assert metrics["split"] == "test" and metrics["track"]["n"] == len(test)
                per_seed[seed].append(float(metrics["track"]["balanced_accuracy"]))
                print(f"{name} fold {f} seed {seed}: {per_seed[seed][-1]:.2f} "
                      f"(train {seconds['train'][-1]:.0f} s)", flush=True)
        means = [float(np.mean(v)) for v in per_seed.values() if v]
        result = {
            "recipe": name, "featurize_flags": feat_flags, "train_flags": train_flags,
            "per_seed_per_fold": {str(k): v for k, v in per_seed.items()},
            "seed_means": means, "mean": float(np.mean(means)), "std_over_seeds": float(np.std(means)),
            "seconds_median": {k: round(float(np.median(v)), 1) for k, v in seconds.items() if v},
            "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
        }
        print(json.dumps(result), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
