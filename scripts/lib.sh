# Shared by scripts/install, scripts/test and scripts/demo; source it, don't run it.
# Sets PY to the interpreter the project is installed into and defines fl_install.

FL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

fl_log() { echo "[install] $*" >&2; }

fl_has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

# The interpreter: $PYTHON if set, the active venv, else python3, except where the
# OS forbids pip into it (PEP 668): then a project venv in .venv.
fl_python() {
  if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; return; fi
  if [ -n "${VIRTUAL_ENV:-}" ]; then PY="$VIRTUAL_ENV/bin/python"; return; fi
  if [ -x "$FL_ROOT/.venv/bin/python" ]; then PY="$FL_ROOT/.venv/bin/python"; return; fi
  PY=$(command -v python3 || command -v python || true)
  if [ -z "$PY" ]; then fl_log "python3 not found: install Python 3.11+"; return 1; fi
  if "$PY" -c 'import os, sys, sysconfig; sys.exit(not (sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))'; then
    fl_log "system Python is externally managed: creating $FL_ROOT/.venv"
    "$PY" -m venv "$FL_ROOT/.venv"
    PY="$FL_ROOT/.venv/bin/python"
  fi
}

# OS packages: Mosquitto (MQTT broker), Java 17 and Maven (local Kafka).
fl_install_os() {
  local missing=()
  fl_has mosquitto || missing+=(mosquitto)
  fl_has java || missing+=(openjdk-17-jre-headless)
  fl_has mvn || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    fl_log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    fl_log "missing ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]});" \
      "until then broker tests skip, or fail under CI=true"
  fi
}

# The Python package with its dev extras; skipped when pyproject.toml is unchanged.
fl_install_python() {
  local stamp="$FL_ROOT/.fl/install.stamp" want
  want="$("$PY" -c 'import sys; print(sys.executable)') $(cksum <"$FL_ROOT/pyproject.toml")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import flctl.main' 2>/dev/null; then
    return 0
  fi
  fl_log "pip install -e '.[dev]' into $PY"
  "$PY" -m pip install -q -e "$FL_ROOT[dev]" >&2
  mkdir -p "$FL_ROOT/.fl" && echo "$want" >"$stamp"
}

# The Kafka jars, once, into ~/.cache/nightshift (or $FL_KAFKA_CACHE).
fl_install_kafka() {
  if ! fl_has java || ! fl_has mvn; then
    fl_log "no java/mvn: skipping the Kafka jar fetch"
    return 0
  fi
  "$PY" -m flctl.main brokers fetch || fl_log "Kafka jar fetch failed: Kafka tests will say why"
}

fl_install() {
  fl_install_os
  fl_python
  fl_install_python
  fl_install_kafka
}
