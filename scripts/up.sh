#!/usr/bin/env bash
# Brings the deployer up on local defaults, in the foreground (Ctrl-C stops it):
# provisions Node 24, Redis, dockerd + swarm (scripts/provision.sh), an open local
# registry on 127.0.0.1:5000, generated secrets, and a demo pipeline: a local git repo
# with a tiny busybox site deployed to the swarm service `demo_www`.
# An existing deployer.local.yaml is used as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/provision.sh
. .tools/env
state=${DEPLOYER_STATE_DIR:-/var/lib/deployer-dev}
local=.tools/local
mkdir -p "$local" "$state/registry"
log() { printf '[up] %s\n' "$*" >&2; }

# A registry for the images the deployer builds (open, loopback only).
if ! curl -fsS -o /dev/null http://127.0.0.1:5000/v2/; then
  log "starting docker-registry on 127.0.0.1:5000"
  cat >"$state/registry.yml" <<YML
version: 0.1
storage:
  filesystem: { rootdirectory: $state/registry }
  delete: { enabled: true }
http: { addr: 127.0.0.1:5000 }
YML
  nohup docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 &
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done
fi

# Secrets, generated once, readable by root only.
for s in webhook-secret admin-token; do
  [ -s "$local/$s" ] || (umask 077; node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("hex"))' >"$local/$s")
done

# The demo site: a git repo and a swarm service running its first image.
demo="$root/$local/demo"
if [ ! -d "$demo/site.git" ]; then
  log "creating the demo site repository in $demo"
  mkdir -p "$demo/work"
  git init -q --bare --initial-branch main "$demo/site.git"
  cp /bin/busybox "$demo/work/busybox"
  mkdir -p "$demo/work/www"
  echo "hello from the demo site" >"$demo/work/www/index.html"
  printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' 'RUN ["/bin/busybox","--install","-s","/bin"]' \
    'COPY www /www' 'CMD ["httpd","-f","-p","8080","-h","/www"]' >"$demo/work/Dockerfile"
  g() { GIT_CONFIG_GLOBAL=/dev/null git -C "$demo/work" -c user.name=demo -c user.email=demo@localhost "$@"; }
  g init -q --initial-branch main && g add -A && g commit -qm "demo site" && g push -q "$demo/site.git" HEAD:main
fi
if ! docker service inspect demo_www >/dev/null 2>&1; then
  log "creating swarm service demo_www"
  docker build -q -t 127.0.0.1:5000/demo-site:seed "$demo/work" >/dev/null
  docker push -q 127.0.0.1:5000/demo-site:seed >/dev/null
  docker network inspect demo_net >/dev/null 2>&1 || docker network create -d overlay --attachable demo_net >/dev/null
  docker service create -d -q --name demo_www --init --network demo_net --endpoint-mode dnsrr \
    --update-order start-first --update-failure-action rollback --stop-grace-period 2s \
    --health-cmd 'wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1' --health-interval 2s \
    127.0.0.1:5000/demo-site:seed >/dev/null
fi

config=deployer.local.yaml
if [ ! -f "$config" ]; then
  log "writing $config"
  cat >"$config" <<YML
# Local defaults written by scripts/up.sh; edit freely, it is not overwritten.
listen: 127.0.0.1:8090
publicUrl: http://127.0.0.1:8090
dataDir: ./data
redis: $REDIS_URL
github:
  webhookSecretFile: $local/webhook-secret
auth:
  adminTokenFile: $local/admin-token
docker:
  host: $DOCKER_HOST
registries:
  - host: 127.0.0.1:5000
pipelines:
  - name: demo
    repo: local/demo-site
    url: file://$demo/site.git
    branch: main
    image: 127.0.0.1:5000/demo-site
    tag: live
    services: [demo_www]
    deploy: { monitor: 3s, timeout: 2m }
YML
fi

cat >&2 <<MSG
[up] deployer on http://127.0.0.1:8090  (config: $config)
[up] admin token:    $local/admin-token     webhook secret: $local/webhook-secret
[up] sign in at http://127.0.0.1:8090/signin with the admin token, then Rebuild; or from a shell:
[up]   DEPLOYER_SERVER=http://127.0.0.1:8090 bin/deployer rebuild demo --token-file $local/admin-token
MSG
exec bin/deployer serve --config "$config"
