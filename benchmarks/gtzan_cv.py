"""Cross-validated accuracy of the training recipe vs an MFCC-statistics + RBF-SVM baseline.

Not a test: a by-hand check on real music.  Featurizes ``--audio`` (one folder per genre, e.g.
``../shared/audio/gtzan-dev``) with the same transforms the featurize job uses, caches the log-mels
in ``--cache``, then runs k-fold cross-validation by clip (fold k tests the k-th clip of every genre)
and reports per-track balanced accuracy of the CNN recipe and of the baseline side by side.
scikit-learn and librosa's MFCC are used only here (the baseline), never by genreflow itself.

    python benchmarks/gtzan_cv.py --audio ../shared/audio/gtzan-dev --epochs 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from typing import Any

import numpy as np

from transforms import audio, spectrogram
from training.train import AUGMENT_FLAGS, TrainConfig, add_augment_arguments, augment_from_flags
from transforms.spec import SpectrogramParams


def featurize(root: pathlib.Path, cache: pathlib.Path, params: SpectrogramParams) -> dict:
    """Log-mel segments and mono audio of every clip, cached as npz."""
    if cache.exists():
        data = np.load(cache, allow_pickle=True)
        return {k: data[k] for k in data.files}
    mel = spectrogram.mel_filter(params)
    labels = sorted(d.name for d in root.iterdir() if d.is_dir())
    X, y, tid, clip_label, clip_id, mfcc_stats = [], [], [], [], [], []
    import librosa

    for li, lab in enumerate(labels):
        for f in sorted((root / lab).iterdir()):
            wav = audio.load_mono(f.read_bytes(), params=params, name=f.name)
            m = spectrogram.log_mel(audio.segment_audio(wav, params=params), mel=mel)
            X.extend(m)
            y.extend([li] * len(m))
            tid.extend([f.stem] * len(m))
            clip_label.append(li)
            clip_id.append(f.stem)
            mf = librosa.feature.mfcc(y=wav, sr=params.sample_rate, n_mfcc=20)
            sc = librosa.feature.spectral_centroid(y=wav, sr=params.sample_rate)
            ro = librosa.feature.spectral_rolloff(y=wav, sr=params.sample_rate)
            zc = librosa.feature.zero_crossing_rate(wav)
            feats = np.concatenate([mf, librosa.feature.delta(mf), sc, ro, zc])
            mfcc_stats.append(np.concatenate([feats.mean(axis=1), feats.std(axis=1)]))
    out = dict(
        X=np.stack(X).astype(np.float32), y=np.array(y), tid=np.array(tid), labels=np.array(labels),
        clip_label=np.array(clip_label), clip_id=np.array(clip_id), mfcc=np.stack(mfcc_stats),
    )
    np.savez(cache, **out)
    return out


def folds(clip_label: np.ndarray, k: int) -> list[np.ndarray]:
    """Fold f holds the f-th (mod k) clip of every genre."""
    rank = np.zeros(len(clip_label), int)
    for c in np.unique(clip_label):
        idx = np.flatnonzero(clip_label == c)
        rank[idx] = np.arange(len(idx))
    return [np.flatnonzero(rank % k == f) for f in range(k)]


def svm_baseline(d: dict, test_clips: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    train = np.setdiff1d(np.arange(len(d["clip_label"])), test_clips)
    clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10, gamma="scale"))
    clf.fit(d["mfcc"][train], d["clip_label"][train])
    return balanced_accuracy_score(d["clip_label"][test_clips], clf.predict(d["mfcc"][test_clips]))


def recipe_architecture(args: argparse.Namespace) -> Any:
    """The named architecture with the command-line overrides applied."""
    from training.model import ARCHITECTURES

    arch = ARCHITECTURES[args.arch]
    changes = {k: v for k, v in dict(
        filters=tuple(args.filters) if args.filters else None, embedding=args.embedding,
        dropout=args.dropout, pooling=args.pooling, band_stats=args.band_stats,
    ).items() if v is not None}
    return dataclasses.replace(arch, **changes)


def cnn_probabilities(d: dict, test_clips: np.ndarray, args: argparse.Namespace, seed: int, params: SpectrogramParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train the recipe on every clip but ``test_clips``; per-track probabilities of the test clips.

    Returns
    -------
    track_probs : np.ndarray, float32, shape (n_test_clips, n_labels)
        Mean segment probabilities per test clip (sorted by track id).
    track_logp : np.ndarray, float32, shape (n_test_clips, n_labels)
        Mean segment log-probabilities per test clip (the geometric mean's argmax).
    track_true : np.ndarray, int, shape (n_test_clips,)
        Label index of each test clip.
    """
    import keras
    import tensorflow as tf

    from training import data, evaluate
    from training.model import build_model, compile_model, make_normalizer

    keras.utils.set_random_seed(seed)
    test_ids = set(d["clip_id"][test_clips])
    is_test = np.array([t in test_ids for t in d["tid"]])
    Xtr, ytr = d["X"][~is_test], d["y"][~is_test]
    n_classes = len(d["labels"])
    norm = make_normalizer()
    norm.adapt(Xtr)
    model = build_model(input_shape=Xtr.shape[1:], n_classes=n_classes, arch=recipe_architecture(args), normalizer=norm)
    steps = len(Xtr) // args.batch_size
    compile_model(model, learning_rate=args.learning_rate, total_steps=steps * args.epochs,
                  warmup_steps=steps * args.warmup_epochs, weight_decay=args.weight_decay,
                  label_smoothing=args.label_smoothing)
    aug = augment_from_flags({flag: getattr(args, flag) for flag in AUGMENT_FLAGS})
    aug = dataclasses.replace(aug, band_hz=tuple(spectrogram.mel_band_centres(params)))

    def finish(mel, label):
        y = tf.one_hot(label, n_classes)
        w = tf.ones(tf.shape(label)[0])
        return data.augment_batch(mel, y, w, augment=aug)

    ds = (tf.data.Dataset.from_tensor_slices((Xtr, ytr.astype(np.int32))).shuffle(len(Xtr), seed=seed)
          .repeat().batch(args.batch_size, drop_remainder=True).map(finish).prefetch(2))
    model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, verbose=0)
    probs = model.predict(d["X"][is_test], batch_size=256, verbose=0)
    _, track_probs, track_true = evaluate.track_probabilities(probs, d["tid"][is_test], d["y"][is_test])
    # the other usual aggregation, for the record: mean log-probability (geometric mean)
    _, track_logp, _ = evaluate.track_probabilities(np.log(probs + 1e-7), d["tid"][is_test], d["y"][is_test])
    return track_probs, track_logp, track_true


def balanced_accuracy(true: np.ndarray, pred: np.ndarray, labels: list[str]) -> float:
    from training import evaluate

    return float(evaluate.classification_metrics(true, pred, labels=labels)["balanced_accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", default="../shared/audio/gtzan-dev", help="one folder of clips per genre")
    ap.add_argument("--cache", default="/tmp/gtzan_cv_cache.npz",
                    help="npz cache of the features (a suffix is added for a non-default segment hop)")
    ap.add_argument("--segment-seconds", type=float, default=None,
                    help="featurize with this segment length (default: the spec default, 3 s)")
    ap.add_argument("--segment-hop-seconds", type=float, default=None,
                    help="featurize with this segment hop (overlapping segments); default: the spec default")
    ap.add_argument("--folds", type=int, default=5, help="number of folds")
    ap.add_argument("--only-folds", type=int, nargs="*", help="run only these fold indexes")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="repeat the CV with these seeds; "
                    "the ensemble row averages the seeds' track probabilities")
    ap.add_argument("--tag", default="", help="name of this recipe in the results")
    ap.add_argument("--out", default=None, help="append one JSON line of results to this file")
    d = TrainConfig(data="", model_dir="")
    ap.add_argument("--arch", default=d.arch, help="architecture name")
    ap.add_argument("--filters", type=int, nargs="*", help="override the architecture's block widths")
    ap.add_argument("--embedding", type=int, help="override the embedding width")
    ap.add_argument("--dropout", type=float, help="override the dropout")
    ap.add_argument("--pooling", choices=("avgmax", "stats"), help="override the global pooling")
    ap.add_argument("--band-stats", action=argparse.BooleanOptionalAction, default=None,
                    help="override: feed per-band mean/std of the input to the embedding layer")
    ap.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    ap.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="warm-up epochs")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    ap.add_argument("--learning-rate", type=float, default=d.learning_rate, help="peak learning rate")
    ap.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    ap.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing")
    add_augment_arguments(ap)  # the trainer's augmentation flags, same defaults
    ap.add_argument("--no-cnn", action="store_true", help="baseline only")
    args = ap.parse_args()
    params = SpectrogramParams()
    cache = pathlib.Path(args.cache)
    if args.segment_seconds:
        params = dataclasses.replace(params, segment_seconds=args.segment_seconds,
                                     segment_hop_seconds=args.segment_seconds)
        cache = cache.with_name(f"{cache.stem}_seg{args.segment_seconds:g}{cache.suffix}")
    if args.segment_hop_seconds:
        params = dataclasses.replace(params, segment_hop_seconds=args.segment_hop_seconds)
        cache = cache.with_name(f"{cache.stem}_hop{args.segment_hop_seconds:g}{cache.suffix}")
    d = featurize(pathlib.Path(args.audio), cache, params)
    labels = list(d["labels"])
    fold_sets = [(f, c) for f, c in enumerate(folds(d["clip_label"], args.folds))
                 if not args.only_folds or f in args.only_folds]
    svm = [svm_baseline(d, c) for _, c in fold_sets]
    per_seed: dict[int, list[float]] = {}
    logmean: dict[int, list[float]] = {}
    ensemble: list[float] = []
    start = time.time()
    if not args.no_cnn:
        for f, test_clips in fold_sets:
            probs = []
            for seed in args.seeds:
                t = time.time()
                p, logp, true = cnn_probabilities(d, test_clips, args, seed * 100 + f, params)
                probs.append(p)
                per_seed.setdefault(seed, []).append(balanced_accuracy(true, p.argmax(1), labels))
                logmean.setdefault(seed, []).append(
                    balanced_accuracy(true, logp.argmax(1), labels))
                print(f"fold {f} seed {seed}: cnn {per_seed[seed][-1]:.2f} ({time.time() - t:.0f} s)", flush=True)
            ensemble.append(balanced_accuracy(true, np.mean(probs, axis=0).argmax(1), labels))
    seed_means = [float(np.mean(v)) for v in per_seed.values()]
    result = {
        "tag": args.tag, "args": {k: v for k, v in vars(args).items() if k not in ("audio", "cache", "out")},
        "svm_per_fold": svm, "svm_mean": float(np.mean(svm)),
        "cnn_per_seed_per_fold": {str(k): v for k, v in per_seed.items()},
        "cnn_seed_means": seed_means,
        "cnn_mean": float(np.mean(seed_means)) if seed_means else None,
        "cnn_std_over_seeds": float(np.std(seed_means)) if seed_means else None,
        "cnn_logmean_per_seed_per_fold": {str(k): v for k, v in logmean.items()},
        "cnn_logmean_mean": float(np.mean([np.mean(v) for v in logmean.values()])) if logmean else None,
        "ensemble_of_seeds_per_fold": ensemble,
        "ensemble_of_seeds_mean": float(np.mean(ensemble)) if ensemble else None,
        "seconds": round(time.time() - start),
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
