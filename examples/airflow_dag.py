"""Airflow DAG: the nightly genre labeling job with the Apache Beam provider's operator.

Needs ``apache-airflow`` and ``apache-airflow-providers-apache-beam`` on the Airflow side (plus
``apache-airflow-providers-google`` for Dataflow).  ``BeamRunPythonPipelineOperator`` runs
``python <py_file> --key=value ...`` for every entry of ``pipeline_options``; with ``py_requirements``
it first builds a virtualenv with genreflow in it, so the Airflow worker's own packages stay
untouched.  ``pipeline_options`` is templated: ``{{ ds }}`` is the DAG run's logical date, so a
backfill or a cleared task relabels exactly that date's partition (reruns replace it atomically).

Copy this file into your DAGs folder and edit the paths.  This file is an example, not part of the
genreflow package; it is not imported by the tests.
"""

from __future__ import annotations

import datetime

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

GENREFLOW = "genreflow==0.1.0"  # or a wheel: "/opt/wheels/genreflow-0.1.0-py3-none-any.whl"
CATALOG = "gs://my-catalog/audio/**"
MODEL_DIR = "gs://my-models/genre/current"
OUTPUT = "gs://my-labels/genre"

with DAG(
    dag_id="genreflow_label_nightly",
    schedule="30 2 * * *",
    start_date=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,  # two runs for the same output must not overlap
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=10)},
    tags=["genreflow"],
) as dag:
    BeamRunPythonPipelineOperator(
        task_id="label",
        # The job module itself; with py_requirements it is importable from the virtualenv as well.
        py_file="/opt/genreflow/pipelines/label.py",
        py_requirements=[GENREFLOW],
        py_interpreter="python3.11",
        py_system_site_packages=False,
        runner="DataflowRunner",  # "DirectRunner" runs genreflow's local FnApiRunner default instead
        pipeline_options={
            # genreflow label's own options (underscore spellings are accepted too)
            "input": CATALOG,
            "model_dir": MODEL_DIR,
            "output": OUTPUT,
            "run_date": "{{ ds }}",
            "format": "parquet",
            "max_batch_size": 256,
            # standard Beam / Dataflow options
            "project": "my-project",
            "region": "europe-west1",
            "temp_location": "gs://my-bucket/tmp",
            "setup_file": "/opt/genreflow/setup.py",  # installs genreflow on the Dataflow workers
            "machine_type": "n2-standard-8",
            "max_num_workers": 50,
        },
    )
