# syntax=docker/dockerfile:1
# The modelrollout operator image (default target) and the reference model server the examples use:
#   docker build -t ghcr.io/modelrollout/modelrollout-operator:0.1.0 .
#   docker build --target model-server -t ghcr.io/modelrollout/reference-model-server:0.1.0 .
# Both run as UID 10001, the UID the Helm chart sets (securityContext.runAsUser), and need no
# writable path but /tmp, so they work with readOnlyRootFilesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build the wheels; nothing of this stage ends up in an image but wheels ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md* : pyproject names README.md as the long description; the wildcard keeps the build
# working in a checkout without it.
COPY pyproject.toml README.md* ./
COPY operator ./operator
COPY sdk ./sdk
COPY devkit ./devkit
# The operator and the SDK it reads metric names from go into every image; the dev kit (emulator,
# sandbox, reference model server, load generator) only into the model server's.
RUN pip wheel --no-deps --wheel-dir /wheels . ./sdk \
 && pip wheel --no-deps --wheel-dir /devkit-wheels ./devkit

# --- the runtime: pinned dependencies, a non-root user ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 modelrollout \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin modelrollout
# Every runtime dependency at the version CI tested (hack/lock_image_deps.py writes the file). Only
# the operator and the SDK: kmock, scikit-learn and the rest of the dev kit stay out of this image.
COPY hack/image-constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --constraint /tmp/constraints.txt /wheels/*.whl \
 && rm /tmp/constraints.txt
# Bytecode was compiled by pip at install time; at run time nothing may write beside the code
# (read-only root filesystem), and HOME points at the one writable place.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001

# --- the reference model server (examples/canary.yaml) ------------------------------------------
FROM runtime AS model-server
# The reference server (and the load generator hack/kind/loadgen.yaml runs) come with the dev kit.
# Fit every model variant once, at build time, into a read-only cache: a pod then starts serving
# with numpy alone, in well under a second, instead of importing scikit-learn and training.
USER root
COPY hack/image-constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=build,source=/devkit-wheels,target=/devkit-wheels \
    pip install --constraint /tmp/constraints.txt /devkit-wheels/*.whl \
 && rm /tmp/constraints.txt
RUN MODEL_CACHE_DIR=/opt/model-cache python -m modelrollout_devkit.sandbox.model_server --warm-cache \
 && chmod -R a+rX /opt/model-cache
USER 10001:10001
# The server listens on loopback unless told otherwise; in a pod it must answer the kubelet and
# the Service.
ENV HOST=0.0.0.0 \
    PORT=8080 \
    MODEL_CACHE_DIR=/opt/model-cache
EXPOSE 8080
ENTRYPOINT ["python", "-m", "modelrollout_devkit.sandbox.model_server"]
CMD []

# --- the operator: last, so a plain `docker build .` produces it ---------------------------------
FROM runtime AS operator
EXPOSE 8080 8081
ENTRYPOINT ["modelrollout"]
CMD ["run"]
