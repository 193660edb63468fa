# Shared by scripts/install, scripts/test and scripts/demo; source it, don't run it.
# Sets PY to the interpreter the project is installed into (by default this clone's
# .venv, see fl_python) and defines fl_install.

FL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

fl_log() { echo "[install] $*" >&2; }

fl_has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

# The interpreter: $PYTHON if set, else the active virtualenv ($VIRTUAL_ENV), else
# this clone's own virtualenv $FL_ROOT/.venv, created on first use from python3.
# One venv per clone: `pip install -e` points an interpreter at one clone, so two
# clones sharing the first Python on PATH would run each other's code.
fl_python() {
  if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; return; fi
  if [ -n "${VIRTUAL_ENV:-}" ]; then PY="$VIRTUAL_ENV/bin/python"; return; fi
  PY="$FL_ROOT/.venv/bin/python"
  if [ -x "$PY" ]; then return; fi
  local base
  base=$(fl_base_python) || return 1
  fl_log "creating this clone's virtualenv $FL_ROOT/.venv from $base"
  if ! "$base" -m venv "$FL_ROOT/.venv" >&2; then
    rm -rf "$FL_ROOT/.venv"
    fl_log "$base -m venv failed: install the venv module (apt-get install python3-venv)," \
      "or name an interpreter with PYTHON=..."
    return 1
  fi
}

# The python3 (3.11+) a new .venv is made from.
fl_base_python() {
  local base
  base=$(command -v python3 || command -v python || true)
  if [ -z "$base" ]; then fl_log "python3 not found: install Python 3.11+"; return 1; fi
  if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    fl_log "$base is Python $("$base" -V 2>&1), the project needs 3.11+ (or set PYTHON=...)"
    return 1
  fi
  echo "$base"
}

# Whether a new .venv will be needed and python3 cannot make one (Debian splits
# ensurepip into python3-venv).
fl_needs_venv_package() {
  [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ ! -x "$FL_ROOT/.venv/bin/python" ] \
    && command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' 2>/dev/null
}

# OS packages: Mosquitto (MQTT broker), Java 17 and Maven (local Kafka).
fl_install_os() {
  local missing=()
  fl_has mosquitto || missing+=(mosquitto)
  fl_has java || missing+=(openjdk-17-jre-headless)
  fl_has mvn || missing+=(maven)
  if fl_needs_venv_package; then missing+=(python3-venv); fi
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

# The Python package with its dev extras; skipped when pyproject.toml is unchanged
# and the interpreter already imports flctl from this clone (not another one's).
fl_install_python() {
  local stamp="$FL_ROOT/.fl/install.stamp" want
  want="$("$PY" -c 'import sys; print(sys.executable)') $(cksum <"$FL_ROOT/pyproject.toml")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && fl_imports_this_clone; then
    return 0
  fi
  fl_log "pip install -e '.[dev]' into $PY"
  "$PY" -m pip install -q -e "$FL_ROOT[dev]" >&2
  mkdir -p "$FL_ROOT/.fl" && echo "$want" >"$stamp"
}

# Whether $PY imports flctl from $FL_ROOT. Run from / so that the working
# directory cannot stand in for the installed package.
fl_imports_this_clone() {
  (cd / && "$PY" -c 'import os, sys, flctl
root = os.path.realpath(sys.argv[1]) + os.sep
sys.exit(not os.path.realpath(flctl.__file__).startswith(root))' "$FL_ROOT") 2>/dev/null
}

# The Kafka jars, once, into ~/.cache/nightshift (or $FL_KAFKA_CACHE).
fl_install_kafka() {
  if ! fl_has java || ! fl_has mvn; then
    fl_log "no java/mvn: skipping the Kafka jar fetch"
    return 0
  fi
  "$PY" -m flctl.main brokers fetch || fl_log "Kafka jar fetch failed: Kafka tests will say why"
}

# The compose test (tests/compose, marker compose): root podman with Debian's runc,
# debootstrap for the base image, CNI's dnsname (service names resolve), and
# podman-compose from PyPI into $PY. crun, podman's default, fails on hybrid
# cgroups, and default ulimits above the machine's hard limits fail every
# container: containers.conf says runc and limits within them (written only when
# absent). Set FL_SKIP_COMPOSE=1 to skip this step.
fl_install_compose() {
  [ "${FL_SKIP_COMPOSE:-}" = 1 ] && return 0
  local missing=()
  fl_has podman || missing+=(podman)
  fl_has runc || missing+=(runc)
  fl_has debootstrap || missing+=(debootstrap)
  [ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    [ ${#missing[@]} -eq 0 ] || fl_log "missing ${missing[*]} (root and apt-get install them):" \
      "until then the compose test skips, or fails under CI=true"
  elif [ ${#missing[@]} -gt 0 ]; then
    fl_log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  fi
  if [ "$(id -u)" = 0 ] && [ ! -f /etc/containers/containers.conf ]; then
    local nofile nproc
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 65536 ] && nproc=65536
    fl_log "writing /etc/containers/containers.conf (runc, ulimits nofile=$nofile nproc=$nproc)"
    mkdir -p /etc/containers
    printf '%s\n' "# written by nightshift-fl scripts/lib.sh (fl_install_compose)" \
      "[containers]" "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]" \
      "[engine]" "runtime = \"runc\"" >/etc/containers/containers.conf
  fi
  "$PY" -c 'import podman_compose' 2>/dev/null && return 0
  fl_log "pip install podman-compose into $PY"
  "$PY" -m pip install -q podman-compose >&2 || fl_log "podman-compose install failed"
}

fl_install() {
  fl_install_os
  fl_python
  fl_install_python
  fl_install_kafka
  fl_install_compose
}
