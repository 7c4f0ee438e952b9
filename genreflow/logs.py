"""Logging set-up shared by the ``genreflow`` command and each module's ``python -m`` entry point."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging"]


def configure_logging(level: str | None = None) -> None:
    """INFO for genreflow's own modules, WARNING for Beam's and TensorFlow's chatter.

    ``GENREFLOW_LOG_LEVEL=DEBUG`` (or ``level``) changes genreflow's level; Beam's worker logs are
    shown at WARNING and above unless that level is DEBUG.
    """
    level = (level or os.environ.get("GENREFLOW_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines (CUDA probing)
    if level != "DEBUG":
        for noisy in ("apache_beam", "tensorflow", "absl", "h5py", "numba", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Relayed worker-process logs of the local runner (start-up notices); errors still show.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
