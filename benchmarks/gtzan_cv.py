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
import json
import pathlib
import time

import numpy as np

from transforms import audio, spectrogram
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


def cnn_recipe(d: dict, test_clips: np.ndarray, args: argparse.Namespace, seed: int) -> float:
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
    model = build_model(input_shape=Xtr.shape[1:], n_classes=n_classes, arch=args.arch, normalizer=norm)
    steps = len(Xtr) // args.batch_size
    compile_model(model, learning_rate=args.learning_rate, total_steps=steps * args.epochs,
                  warmup_steps=steps * args.warmup_epochs, label_smoothing=args.label_smoothing)
    aug = data.Augment(mixup_alpha=args.mixup, freq_mask_width=args.freq_mask, time_mask_width=args.time_mask,
                       freq_masks=2 if args.freq_mask else 0, time_masks=2 if args.time_mask else 0)

    def finish(mel, label):
        y = tf.one_hot(label, n_classes)
        w = tf.ones(tf.shape(label)[0])
        if aug.freq_masks or aug.time_masks:
            mel = data._spec_augment(mel, aug, None)
        if aug.mixup_alpha:
            mel, y, w = data._mixup(mel, y, w, aug.mixup_alpha, None)
        return mel, y, w

    ds = (tf.data.Dataset.from_tensor_slices((Xtr, ytr.astype(np.int32))).shuffle(len(Xtr), seed=seed)
          .repeat().batch(args.batch_size, drop_remainder=True).map(finish).prefetch(2))
    model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, verbose=0)
    probs = model.predict(d["X"][is_test], batch_size=256, verbose=0)
    tracks, track_probs, track_true = evaluate.track_probabilities(probs, d["tid"][is_test], d["y"][is_test])
    return evaluate.classification_metrics(track_true, track_probs.argmax(1), labels=list(d["labels"]))["balanced_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", default="../shared/audio/gtzan-dev", help="one folder of clips per genre")
    ap.add_argument("--cache", default="/tmp/gtzan_cv_cache.npz", help="npz cache of the features")
    ap.add_argument("--folds", type=int, default=5, help="number of folds")
    ap.add_argument("--only-folds", type=int, nargs="*", help="run only these fold indexes")
    ap.add_argument("--arch", default="temporal", help="architecture name")
    ap.add_argument("--epochs", type=int, default=40, help="training epochs")
    ap.add_argument("--warmup-epochs", type=int, default=2, help="warm-up epochs")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size")
    ap.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate")
    ap.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    ap.add_argument("--mixup", type=float, default=0.3, help="mixup alpha (0 = off)")
    ap.add_argument("--freq-mask", type=int, default=16, help="max frequency mask width (0 = off)")
    ap.add_argument("--time-mask", type=int, default=20, help="max time mask width (0 = off)")
    ap.add_argument("--no-cnn", action="store_true", help="baseline only")
    ap.add_argument("--seed", type=int, default=0, help="seed")
    args = ap.parse_args()
    d = featurize(pathlib.Path(args.audio), pathlib.Path(args.cache), SpectrogramParams())
    results = {"svm": [], "cnn": []}
    for f, test_clips in enumerate(folds(d["clip_label"], args.folds)):
        if args.only_folds and f not in args.only_folds:
            continue
        results["svm"].append(svm_baseline(d, test_clips))
        if not args.no_cnn:
            t = time.time()
            results["cnn"].append(cnn_recipe(d, test_clips, args, args.seed + f))
            print(f"fold {f}: svm {results['svm'][-1]:.2f} cnn {results['cnn'][-1]:.2f} ({time.time() - t:.0f} s)", flush=True)
    summary = {k: float(np.mean(v)) for k, v in results.items() if v}
    print(json.dumps({"args": vars(args), "per_fold": results, "mean": summary}))


if __name__ == "__main__":
    main()
