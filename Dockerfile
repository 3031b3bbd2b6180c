# The deployer as an image: Node.js 24 running the TypeScript sources directly (type
# stripping, no build step), production dependencies only, git and ssh for fetching,
# tini as PID 1, a non-root user (uid/gid 10001), a read-only root filesystem is fine
# (writes go to the data volume /var/lib/deployer and /tmp).
#
#   docker build -t deployer .                   public base image (node:24-bookworm-slim)
#   scripts/image.sh deployer                    the same, or the local base built from Debian
#                                                packages when Docker Hub is out of reach
# Arguments are the CLI's: `serve --config FILE`, `worker --config FILE`, `check-config …`.
#
# Only what the BuildKit of Docker Engine 26 supports, and no `# syntax=` line (that would
# pull a frontend image from Docker Hub), so the deployer's own builder builds it too.
ARG BASE_IMAGE=node:24-bookworm-slim

FROM ${BASE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs an install script (node:sqlite is built in; ssh2's optional native
# speed-up is not required): nothing is compiled, so no compiler is needed anywhere.
RUN --mount=type=cache,id=deployer-npm,target=/root/.npm,sharing=locked \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=warn

FROM ${BASE_IMAGE}
# git runs every fetch; openssh-client for ssh:// remotes and Docker hosts; tini is PID 1
# (forwards SIGTERM to the deployer, reaps git's children).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 deployer \
 && useradd --uid 10001 --gid deployer --home-dir /var/lib/deployer --no-create-home --shell /usr/sbin/nologin deployer \
 && mkdir -p /var/lib/deployer /etc/deployer /app/.compile-cache \
 && chown deployer:deployer /var/lib/deployer /app/.compile-cache
WORKDIR /app
# NODE: bin/deployer then skips looking for a recent enough Node.js.
ENV NODE_ENV=production PATH=/app/bin:$PATH NODE=/usr/local/bin/node
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY src ./src
# Numeric, so "runs as non-root" can be checked without reading /etc/passwd. The Docker
# socket is reached through its group: `group_add: [<gid of the socket>]` (compose) or
# `user: "10001:<gid>"` (stack); see README, "Running it in production".
USER 10001:10001
# V8's compile cache of every module (all of src/, each one's dependencies with it), made
# now because the root filesystem is read-only at run time: Node then only reads it. One
# module missing from it (a lazily loaded one, say) costs every start of the CLI the
# load of Node's TypeScript stripper (amaro, ~0.5 s CPU); with none missing, `check-config`
# takes about half the CPU. Node keys the cache by uid, hence made as the user that runs it.
# Importing every module is safe: none does anything when imported (cli.ts runs only as
# the main module).
ENV NODE_COMPILE_CACHE=/app/.compile-cache
RUN node --disable-warning=ExperimentalWarning --input-type=module -e ' \
      import { readdirSync } from "node:fs"; \
      for (const f of readdirSync("/app/src", { recursive: true })) if (f.endsWith(".ts") && !f.endsWith(".d.ts")) await import(`/app/src/${f}`);'
# The SQLite store, git mirrors and work trees. A named volume starts with this
# directory's owner (10001), so the deployer can write it.
VOLUME /var/lib/deployer
EXPOSE 8090
# /healthz answers 200 when Redis, the store and Docker answer. Without curl: Node's
# fetch. The URL follows `listen: 0.0.0.0:8090`; set DEPLOYER_HEALTHCHECK_URL for another
# port. Workers serve no HTTP: give them `healthcheck: { disable: true }`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --start-interval=1s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.DEPLOYER_HEALTHCHECK_URL||'http://127.0.0.1:8090/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/bin/deployer"]
CMD ["serve", "--config", "/etc/deployer/deployer.yaml"]

# Last, so a new commit rebuilds nothing above.
ARG BASE_IMAGE
ARG SOURCE_COMMIT=unknown
ARG VERSION=unknown
# /healthz says which commit answers (a self-deploy checks its successor is the new one).
ENV DEPLOYER_REVISION=${SOURCE_COMMIT}
LABEL org.opencontainers.image.title="deployer" \
      org.opencontainers.image.description="Continuous deployment daemon: GitHub push -> build -> registry -> Docker swarm, with the truth about every rollout" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${SOURCE_COMMIT}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
