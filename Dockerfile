# One image for every role: `flctl coordinator|selector|aggregator|devices` (see compose.yaml).
# Debian packages plus the wheels `flctl images prepare` put in compose/context/wheels
# (air-gapped builds); without them, pip fetches the same from PyPI.
FROM debian:bookworm-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/fl/bin:$PATH
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/fl
COPY compose/context/ /tmp/context/
# Dependencies first (their own layer, rebuilt only when pyproject.toml changes):
# the project with no sources yet installs just what it depends on. setuptools>=70.1
# builds wheels itself (no "wheel" package needed).
COPY pyproject.toml README.md /app/
RUN set -e; \
    if ls /tmp/context/wheels/*.whl >/dev/null 2>&1; then \
      pip="pip install --no-cache-dir --no-index --find-links /tmp/context/wheels"; \
    else pip="pip install --no-cache-dir"; fi; \
    $pip 'setuptools>=70.1'; \
    $pip --no-build-isolation '/app[services,sim]'
COPY schemas/ /app/schemas/
COPY flcore/ /app/flcore/
COPY flproc/ /app/flproc/
COPY flbus/ /app/flbus/
COPY flstore/ /app/flstore/
COPY modelzoo/ /app/modelzoo/
COPY device_sdk/ /app/device_sdk/
COPY flsim/ /app/flsim/
COPY services/ /app/services/
COPY flctl/ /app/flctl/
COPY bench/ /app/bench/
RUN pip install --no-cache-dir --no-deps --no-build-isolation /app \
 && rm -rf /tmp/context /app/build \
 && useradd --create-home fl \
 && install -d -o fl -g fl /data
# The entrypoint copies the mounted secrets to the fl user, drops to it (no USER here:
# it starts as root only for that), waits for the brokers (and topics) a role needs,
# then execs the command.
COPY compose/entrypoint.py /opt/fl/entrypoint.py
WORKDIR /home/fl
# Roles touch /tmp/fl-healthy while their event loop runs; compose.yaml's healthchecks read its age.
ENTRYPOINT ["/opt/fl/bin/python", "/opt/fl/entrypoint.py"]
CMD ["flctl", "--help"]
