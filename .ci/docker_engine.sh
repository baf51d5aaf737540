#!/usr/bin/env bash
# A private Docker engine for the container tests, plus the offline base image they build on.
#
# Usage: .ci/docker_engine.sh start|stop|status|clean
#   start   Install docker.io, debootstrap and docker-compose with apt when they are missing (root only), start
#           dockerd on a private socket with no bridge and no iptables rules (containers get only the `none` and
#           `host` networks), build the base image from Debian packages when it is missing (debootstrap, then
#           `docker import`), and print `DOCKER_HOST=unix://...` as the last line of stdout.
#           An engine this script already started is reused.
#   stop    Stop the dockerd this script started. The image store stays, so the base image is cached.
#   status  Print `DOCKER_HOST=...` and exit 0 when the private engine answers; exit 1 otherwise.
#   clean   Stop the engine and delete its state folder (images, build cache, logs).
#
# Environment:
#   WDM_CI_CACHE       state folder (default: ${XDG_CACHE_HOME:-~/.cache}/wdm-inpaint-ci)
#   WDM_BASE_IMAGE     name of the base image to build (default: local/debian-py:bookworm)
#   WDM_DEBIAN_SUITE   Debian suite of the base image (default: bookworm)
#   WDM_DEBIAN_MIRROR  Debian mirror for debootstrap (default: http://deb.debian.org/debian)
#
# Exit codes: 0 ready; 1 usage or engine failure; 3 no engine can be started on this machine (the tests skip).
set -euo pipefail

CACHE_DIR="${WDM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wdm-inpaint-ci}"
STATE_DIR="$CACHE_DIR/docker"
SOCKET="$STATE_DIR/docker.sock"
PIDFILE="$STATE_DIR/dockerd.pid"
LOGFILE="$STATE_DIR/dockerd.log"
BASE_IMAGE="${WDM_BASE_IMAGE:-local/debian-py:bookworm}"
DEBIAN_SUITE="${WDM_DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${WDM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
READY_TIMEOUT_S=60
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

export DOCKER_HOST="unix://$SOCKET"

say() { echo "docker_engine: $*" >&2; }
cannot() { say "$*"; exit 3; }

engine_answers() { docker version >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || cannot "not root, cannot install ${missing[*]} with apt"
  command -v apt-get >/dev/null 2>&1 || cannot "apt-get not found, cannot install ${missing[*]}"
  say "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$CACHE_DIR"
  local log="$CACHE_DIR/apt.log"
  apt-get update >"$log" 2>&1 || { tail -n 20 "$log" >&2; cannot "apt-get update failed (log: $log)"; }
  apt-get install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; cannot "apt-get install ${missing[*]} failed (log: $log)"; }
}

start_engine() {
  if engine_answers; then
    say "reusing the engine at $DOCKER_HOST"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || cannot "not root, cannot start dockerd"
  command -v dockerd >/dev/null 2>&1 || cannot "dockerd not found"
  mkdir -p "$STATE_DIR/root" "$STATE_DIR/exec"
  if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    rm -f "$PIDFILE" "$SOCKET"
  fi
  say "starting dockerd (log: $LOGFILE)"
  setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --data-root "$STATE_DIR/root" --exec-root "$STATE_DIR/exec" --pidfile "$PIDFILE" \
    -H "$DOCKER_HOST" >"$LOGFILE" 2>&1 </dev/null &
  local waited=0
  until engine_answers; do
    sleep 0.5
    waited=$((waited + 1))
    if [ "$waited" -ge $((READY_TIMEOUT_S * 2)) ]; then
      tail -n 20 "$LOGFILE" >&2 || true
      cannot "dockerd did not answer within ${READY_TIMEOUT_S}s"
    fi
  done
}

build_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || cannot "base image $BASE_IMAGE is missing and building it needs root (debootstrap)"
  command -v debootstrap >/dev/null 2>&1 || cannot "debootstrap not found, cannot build $BASE_IMAGE"
  local rootfs="$CACHE_DIR/rootfs.$$"
  rm -rf "$rootfs"
  say "building $BASE_IMAGE with debootstrap ($DEBIAN_SUITE)"
  local log="$CACHE_DIR/debootstrap.log"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; rm -rf "$rootfs"; cannot "debootstrap failed (log: $log)"; }
  # The machine's CA bundle lets pip reach the package index from builds behind a TLS-inspecting proxy.
  if [ -f "$HOST_CA_BUNDLE" ]; then
    cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndisable-pip-version-check = true\n' \
    >"$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

stop_engine() {
  if [ -f "$PIDFILE" ]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping dockerd (pid $pid)"
      kill "$pid"
      for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
    fi
    rm -f "$PIDFILE"
  fi
  # dockerd leaves mounts behind (the default network namespace, overlay layers after a crash).
  local mounts
  mounts="$(awk -v dir="$STATE_DIR/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r)"
  for mnt in $mounts; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done
}

case "${1:-}" in
  start)
    mkdir -p "$CACHE_DIR" 2>/dev/null || cannot "cannot create the state folder $CACHE_DIR"
    exec 9>"$CACHE_DIR/lock"
    flock 9
    install_packages
    start_engine
    build_base_image
    echo "DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop)
    stop_engine
    ;;
  status)
    engine_answers || exit 1
    echo "DOCKER_HOST=$DOCKER_HOST"
    ;;
  clean)
    stop_engine
    rm -rf "$CACHE_DIR"
    ;;
  *)
    echo "usage: $0 start|stop|status|clean" >&2
    exit 1
    ;;
esac
