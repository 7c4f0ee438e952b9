"""Packaging for genreflow: the Beam jobs, shared transforms and the TensorFlow trainer.

The same file is what Dataflow workers install with ``--setup_file ./setup.py``.
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "genreflow" / "__init__.py").read_text()).group(1)

# Runtime pins: versions measured together (see README "Dependencies").
INSTALL_REQUIRES = [
    "apache-beam==2.77.0",
    "tensorflow==2.21.0",  # not tensorflow-cpu: Beam's TF handler pulls tf-keras, which needs `tensorflow`
    "tensorboard==2.21.0",  # TF 2.21 no longer depends on it; the trainer writes TensorBoard logs
    "librosa==0.11.0",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "pyarrow==25.0.1",
    "fsspec==2026.9.0",
    "numpy>=2.0,<3",
    "scipy>=1.13,<2",
    "matplotlib>=3.9,<4",
]

EXTRAS = {
    "gcp": ["apache-beam[gcp]==2.77.0", "gcsfs==2026.10.1"],
    "aws": ["s3fs==2026.9.0"],
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "moto[server]==5.2.5",
        "s3fs==2026.9.0",
        "pandas>=2.2,<4",
        "duckdb==2.0.0",
        "scikit-learn>=1.5,<2",  # cross-checks of the metric functions and benchmarks only
        # Beam's own TFModelHandlerNumpy imports tensorflow_hub (which needs pkg_resources, gone
        # from setuptools 81): installed so the test that loads our .keras with it runs for real.
        "tensorflow-hub==0.16.1",
        "tf-keras==2.21.0",
        "setuptools==80.9.0",
    ],
}

setup(
    name="genreflow",
    version=VERSION,
    description="Music-genre classification as a distributed batch pipeline (Beam + TensorFlow)",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["genreflow", "genreflow.*", "pipelines", "pipelines.*",
                                    "transforms", "transforms.*", "training", "training.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["genreflow = genreflow.cli:main"]},
    license="Apache-2.0",
)
