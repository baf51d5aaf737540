# wdm-inpaint inference image.
#   MLCube / MedPerf:  IMAGE infer --data_path=... --output_path=... [--parameters_file=...] [--checkpoint_path=...]
#   Plain Docker:      docker run --gpus all -v IN:/input:ro -v OUT:/output IMAGE
# Build arguments (docs/container.md):
#   BASE        CUDA runtime image that holds Python (and usually torch)
#   TORCH_SPEC  pip arguments that install torch into the image; empty keeps the base image's torch
#   CHECKPOINT  checkpoint file in the build context that the image bundles
#   APP_UID     uid and gid of the image's non-root user
# Wheels put in wheels/ of the build context are available to pip as /opt/wdm-inpaint/build/*.whl.
ARG BASE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

# Optional local wheels (pyproject.toml only makes the COPY valid when wheels/ is empty or absent).
FROM ${BASE} AS wheels
COPY pyproject.toml wheels/*.whl /wheels/
RUN rm /wheels/pyproject.toml

# The sources, without any checkpoint: the image bundles exactly one, named by CHECKPOINT.
FROM ${BASE} AS source
WORKDIR /src
COPY pyproject.toml README.md /src/
COPY project /src/project
RUN find /src/project -path '*/resources/*' \( -name '*.pt' -o -name '*.pth' -o -name '*.ckpt' \) -delete

FROM ${BASE}
ARG TORCH_SPEC=""
ARG CHECKPOINT=project/wdm_inpaint/resources/wdm_inpaint_demo.pt
ARG APP_UID=10001
LABEL org.opencontainers.image.title="wdm-inpaint" \
      org.opencontainers.image.description="Healthy-tissue inpainting of brain MRI (3D wavelet diffusion model)" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp/wdm-home \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/wdm-home/.cache \
    MPLCONFIGDIR=/tmp/wdm-home/.config/matplotlib \
    TORCH_HOME=/tmp/wdm-home/.cache/torch \
    HF_HUB_OFFLINE=1 \
    WDM_INPAINT_CHECKPOINT=/opt/wdm-inpaint/checkpoint.pt
# A virtual environment on top of the base's Python: the base's torch stays visible unless TORCH_SPEC replaces it.
RUN python3 -m venv --system-site-packages /opt/venv
WORKDIR /opt/wdm-inpaint/build
COPY --from=wheels /wheels/ /opt/wdm-inpaint/build/
# TORCH_SPEC holds pip arguments with their own pins (for example a version and an index URL): split on purpose.
# hadolint ignore=SC2086,DL3013
RUN if [ -n "${TORCH_SPEC}" ]; then pip install ${TORCH_SPEC}; fi
# Dependencies: a stub package (and README) stand in for the sources, so this layer only changes with
# pyproject.toml.
COPY pyproject.toml /opt/wdm-inpaint/build/
RUN mkdir -p project/wdm_inpaint \
    && touch project/wdm_inpaint/__init__.py README.md \
    && pip install . "setuptools>=64" "wheel>=0.40" \
    && pip uninstall --yes wdm-inpaint \
    && rm -rf project build README.md
COPY --from=source /src /opt/wdm-inpaint/src
COPY ${CHECKPOINT} /opt/wdm-inpaint/checkpoint.pt
# Install the package without network access, make the checkpoint readable by any user, add the user, and check
# that the bundled checkpoint loads.
RUN pip install --no-deps --no-build-isolation /opt/wdm-inpaint/src \
    && rm -rf /opt/wdm-inpaint/src \
    && chmod 0644 /opt/wdm-inpaint/checkpoint.pt \
    && groupadd --gid "${APP_UID}" wdm \
    && useradd --uid "${APP_UID}" --gid "${APP_UID}" --no-create-home --home-dir /tmp/wdm-home \
       --shell /usr/sbin/nologin wdm \
    && python3 -c "from wdm_inpaint.checkpoint import load_checkpoint; load_checkpoint('/opt/wdm-inpaint/checkpoint.pt')"
USER ${APP_UID}:${APP_UID}
WORKDIR /tmp
ENTRYPOINT ["python3", "-m", "wdm_inpaint.container"]
