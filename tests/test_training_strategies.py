"""``--strategy mirrored|multi-worker`` and ``--mixed-precision`` on this CPU machine.

Each run is its own process: ``MultiWorkerMirroredStrategy`` must be created before any other
TensorFlow op, and a process holds one strategy.  The multi-worker run is a real one-worker cluster
from ``TF_CONFIG`` (the way a training cluster starts every worker).  The runs are short: they prove
the code paths train, checkpoint and export a float32 model that loads, not that they learn.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trainutil
from conftest import free_port
from transforms.metadata import read_metadata, read_model_card

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--freq-mask", "3", "--time-mask", "3", "--batch-size", "16", "--warmup-epochs", "1", "--verbose", "0",
        "--epochs", "2"]

CHECK = """
import json, sys
import keras, numpy as np
from training import data, export
from transforms.metadata import read_metadata
loaded = export.load_model_dir(sys.argv[1])
md = read_metadata(sys.argv[2])
mel = data.load_split(sys.argv[2], metadata=md, split="test")["mel"]
p = np.asarray(loaded.model(mel, training=False))
print(json.dumps({"dtype": str(p.dtype), "sums": p.sum(axis=1).tolist(), "shape": list(p.shape),
                  "weights": sorted({str(w.dtype) for w in loaded.model.weights}),
                  "policies": sorted({layer.dtype_policy.name for layer in loaded.model.layers})}))
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    trainutil.write_dataset(d, fmt="tfrecord", seed=3)
    return d


def _train(dataset, model_dir, *extra, env=None):
    run = subprocess.run(
        [sys.executable, "-m", "training.train", "--data", dataset, "--model-dir", model_dir, *TINY, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    check = subprocess.run([sys.executable, "-c", CHECK, model_dir, dataset], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    return json.loads(check.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name, extra, env", [
    ("mirrored", ["--strategy", "mirrored"], None),
    ("multi-worker", ["--strategy", "multi-worker"], "tf_config"),
    ("mixed-precision", ["--mixed-precision"], None),
])
def test_strategy_trains_and_exports_a_float32_model(dataset, tmp_path, name, extra, env):
    if env == "tf_config":
        env = {"TF_CONFIG": json.dumps({"cluster": {"worker": [f"localhost:{free_port()}"]},
                                        "task": {"type": "worker", "index": 0}})}
    model_dir = str(tmp_path / name)
    out = _train(dataset, model_dir, *extra, env=env)

    card = read_model_card(model_dir)
    md = read_metadata(dataset)
    assert card.labels == md.labels and card.spectrogram == md.spectrogram
    assert card.extra["epochs_completed"] == 2
    assert os.path.exists(os.path.join(model_dir, "metrics.json"))
    # The exported model is float32 whatever the training precision: the label job runs on CPUs.
    assert out["dtype"] == "float32" and "float16" not in out["weights"]
    assert "mixed_float16" not in out["policies"]
    assert out["shape"][1] == len(md.labels)
    np.testing.assert_allclose(out["sums"], 1.0, atol=1e-5)
    assert not os.path.exists(os.path.join(model_dir, ".workers"))  # the one worker is the chief
