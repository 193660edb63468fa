# One image for every role: `flctl coordinator|selector|aggregator|devices` (see compose.yaml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY flcore/ flcore/
COPY flproc/ flproc/
COPY flbus/ flbus/
COPY modelzoo/ modelzoo/
COPY device_sdk/ device_sdk/
COPY flsim/ flsim/
COPY services/ services/
COPY flctl/ flctl/
COPY bench/ bench/
# services: the roles; sim: flctl devices and the coordinator's held-out split (scikit-learn data).
RUN pip install --no-cache-dir '.[services,sim]'
RUN useradd --create-home fl
USER fl
# Roles touch /tmp/fl-healthy while healthy; compose.yaml healthchecks read its age.
CMD ["flctl", "--help"]
