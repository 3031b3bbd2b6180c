#!/usr/bin/env bash
# Builds the deployer's image: scripts/image.sh TAG [docker build options…]
# The base is $BASE_IMAGE when set; else node:24-bookworm-slim when the engine has it or
# can pull it; else its local equivalent from scripts/base-images.sh (Debian packages and
# the npm registry only, tagged in the local registry). Always BuildKit (`docker build`
# with buildx); the commit and version become OCI labels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[image] %s\n' "$*" >&2; }
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: scripts/image.sh TAG [docker build options…]" >&2
  exit 2
fi
tag=$1
shift
[ -f "$root/.tools/env" ] && . "$root/.tools/env"

public=node:24-bookworm-slim
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect "$public" >/dev/null 2>&1 || timeout 120 docker pull -q "$public" >/dev/null 2>&1; then
    base=$public
  else
    log "$public cannot be pulled here: building on its local equivalent (scripts/base-images.sh)"
    base=$("$root/scripts/base-images.sh" | sed -n 's/^NODE_BASE_IMAGE=//p')
    [ -n "$base" ] || { log "scripts/base-images.sh gave no base image"; exit 1; }
  fi
fi
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json")
log "building $tag on $base (commit $commit)"
DOCKER_BUILDKIT=1 exec docker build \
  --build-arg "BASE_IMAGE=$base" --build-arg "SOURCE_COMMIT=$commit" --build-arg "VERSION=${version:-unknown}" \
  --tag "$tag" "$@" "$root"
