# genreflow worker + Flex Template launcher image for Dataflow (one image for both roles).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/genreflow:VERSION .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/genreflow:VERSION
#
# As an SDK container: --sdk_container_image=IMAGE (Beam's boot entrypoint starts the worker).
# As a Flex Template: gcloud dataflow flex-template build ... --image IMAGE
#   (see docs/running-at-scale.md#flex-template-and-a-nightly-schedule);
# the launcher runs dataflow/label_main.py, which launches pipelines.label.
# Not built in this repository's CI: its machines have no Docker engine.

# The Flex Template launcher binary, from Google's launcher base image.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base AS template_launcher

# Beam's Python 3.11 SDK image of the Beam version setup.py pins: Python, Beam, the worker boot.
FROM apache/beam_python3.11_sdk:2.77.0

# libsndfile decodes wav/flac/ogg/mp3/au (soundfile also bundles one; the system library is the
# fallback for distributions whose wheel lacks it); ffmpeg is not needed for these formats.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /template
COPY setup.py README.md requirements-lock.txt ./
COPY genreflow ./genreflow
COPY pipelines ./pipelines
COPY transforms ./transforms
COPY training ./training
COPY dataflow ./dataflow
# The package and its pinned dependencies, installed once into the image: workers start without
# pip, and Beam's own packages stay at the image's version (pinned equal in setup.py).
RUN pip install --no-cache-dir -c requirements-lock.txt '.[gcp]'

COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/dataflow/label_main.py
# Everything is installed above: the launcher must not pip-install again at launch.
ENV PIP_NO_DEPS=True

# Beam's worker boot (the SDK image's entrypoint). The Flex Template launcher is started by
# Dataflow explicitly, so this image serves both roles.
ENTRYPOINT ["/opt/apache/beam/boot"]
