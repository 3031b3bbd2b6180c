// Screenshots of every console page, light and dark, wide and narrow, into
// docs/screenshots/ (the README shows the wide ones). Run: node scripts/screenshots.ts
// Needs Redis (REDIS_URL) and Debian's chromium; no Docker: the store is filled directly
// with runs as a worker would report them (BuildKit-style build output with colours).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import { RunQueues } from '../src/queue/run-queue.ts';
import { startDaemon } from '../src/daemon.ts';
import type { RunEvent } from '../src/pipeline/events.ts';
import { ADMIN_TOKEN, testConfig } from '../test/helpers/config.ts';
import { disposeQueues } from '../test/helpers/world.ts';

const OUT = join(import.meta.dirname, '..', 'docs', 'screenshots');
mkdirSync(OUT, { recursive: true });

const config = testConfig({
  pipelines: [
    { name: 'www', repo: 'ocaml/ocaml.org', image: '127.0.0.1:5000/ocaml-org', services: ['infra_www'] },
    { name: 'docs', repo: 'ocaml/ocaml-docs', image: '127.0.0.1:5000/ocaml-docs', services: ['docs_web', 'docs_search'] },
    { name: 'watch', repo: 'ocaml/watch', image: '127.0.0.1:5000/watch', services: ['watch_web'] },
  ],
});
const daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
const store = daemon.store!;
const url = daemon.url!;
const ESC = '\u001b';
const hex = (n: number, len = 40) => Array.from({ length: len }, (_, i) => ((n * 7919 + i * 104729) % 16).toString(16)).join('');
const at = (minAgo: number) => new Date(Date.now() - minAgo * 60_000).toISOString();
const apply = (e: RunEvent) => {
  if (!store.apply(e)) throw new Error(`refused ${e.type}`);
};

function buildLog(fail: boolean): string[] {
  return [
    '#0 building with "default" instance using docker driver',
    '',
    '#1 [internal] load build definition from Dockerfile',
    '#1 transferring dockerfile: 412B done',
    '#1 DONE 0.0s',
    '',
    '#2 [internal] load .dockerignore',
    '#2 transferring context: 34B done',
    '#2 DONE 0.0s',
    '',
    '#3 [build 1/4] FROM docker.io/ocaml/opam:debian-ocaml-5.2@sha256:4f1c…',
    '#3 CACHED',
    '',
    '#4 [build 2/4] COPY --chown=opam . /src',
    '#4 DONE 0.3s',
    '',
    '#5 [build 3/4] RUN opam exec -- dune build @install --profile release',
    `#5 0.512 ${ESC}[1mFile "src/ocamlorg_web/lib/handler.ml", line 42, characters 6-17:${ESC}[0m`,
    `#5 0.513 ${ESC}[1;35mWarning${ESC}[0m 26 [unused-var]: unused variable ${ESC}[1mrequest${ESC}[0m.`,
    '#5 3.904 Done: 812/812 (jobs: 2)',
    ...(fail
      ? [`#5 4.107 ${ESC}[1;31mError:${ESC}[0m Unbound module Ocamlorg_data`, '#5 ERROR: process "/bin/sh -c opam exec -- dune build @install --profile release" did not complete successfully: exit code: 1']
      : [`#5 4.012 ${ESC}[32m✔${ESC}[0m built ocamlorg_web.exe (12.4 MB)`, '#5 DONE 4.1s', '', '#6 [build 4/4] RUN cp _build/default/src/ocamlorg_web/bin/main.exe /bin/server', '#6 DONE 0.2s', '', '#7 exporting to image', '#7 exporting layers 0.4s done', '#7 writing image sha256:9d1e2c… done', '#7 naming to 127.0.0.1:5000/ocaml-org:live done', '#7 DONE 0.5s']),
  ];
}

/** A run as a worker reports it; `upTo` stops it midway (a running run). */
function run(pipeline: string, i: number, opts: { subject: string; author: string; minutesAgo: number; fail?: boolean; upTo?: 'build'; trigger?: 'push' | 'rebuild'; by?: string; services?: string[] }) {
  const commit = hex(i);
  const [view] = store.createRuns([{ pipeline, trigger: opts.trigger ?? 'push', commit, subject: opts.subject, author: opts.author, ...(opts.by ? { requestedBy: opts.by } : {}) }]);
  const id = view!.id;
  const t = opts.minutesAgo;
  apply({ type: 'run.started', runId: id, at: at(t), worker: 'deploy-1:4021', attempt: 1 });
  apply({ type: 'stage.started', runId: id, stage: 'fetch', at: at(t) });
  store.appendLog(id, 'fetch', at(t), [`fetching ${commit.slice(0, 12)} from https://github.com/ocaml/${pipeline}.git`, 'mirror up to date (3 new objects)', `checked out ${commit.slice(0, 12)} in 0.21s`]);
  apply({ type: 'stage.finished', runId: id, stage: 'fetch', status: 'succeeded', at: at(t - 0.05) });
  apply({ type: 'stage.started', runId: id, stage: 'build', at: at(t - 0.05) });
  const log = buildLog(!!opts.fail);
  store.appendLog(id, 'build', at(t - 0.1), opts.upTo ? log.slice(0, 19) : log);
  if (opts.upTo) return id;
  if (opts.fail) {
    apply({ type: 'stage.finished', runId: id, stage: 'build', status: 'failed', at: at(t - 1), error: 'exit code: 1' });
    apply({ type: 'stage.finished', runId: id, stage: 'push', status: 'skipped', at: at(t - 1) });
    apply({ type: 'stage.finished', runId: id, stage: 'deploy', status: 'skipped', at: at(t - 1) });
    apply({ type: 'run.finished', runId: id, status: 'failed', at: at(t - 1), error: 'build: process "/bin/sh -c opam exec -- dune build" did not complete successfully: exit code: 1' });
    return id;
  }
  apply({ type: 'stage.finished', runId: id, stage: 'build', status: 'succeeded', at: at(t - 1) });
  apply({ type: 'stage.started', runId: id, stage: 'push', at: at(t - 1) });
  const digest = `sha256:${hex(i + 99, 64)}`;
  store.appendLog(id, 'push', at(t - 1), [`pushed 127.0.0.1:5000/${pipeline}:${commit} and :live`, `digest ${digest}`]);
  apply({ type: 'image', runId: id, ref: `127.0.0.1:5000/${pipeline}:live@${digest}`, digest });
  apply({ type: 'stage.finished', runId: id, stage: 'push', status: 'succeeded', at: at(t - 1.1) });
  apply({ type: 'stage.started', runId: id, stage: 'deploy', at: at(t - 1.1) });
  for (const service of opts.services ?? []) {
    store.appendLog(id, 'deploy', at(t - 1.2), [`${service}: updating to 127.0.0.1:5000/${pipeline}:live@${digest.slice(0, 19)}… (start-first, monitor 5s)`, `${service}: 2/2 tasks running the new image; converged in 7.2s`]);
    apply({ type: 'service.result', runId: id, at: at(t - 1.3), result: { service, outcome: 'succeeded', previousImage: `127.0.0.1:5000/${pipeline}:live@sha256:${hex(i + 98, 64)}`, image: `127.0.0.1:5000/${pipeline}:live@${digest}`, taskErrors: [], message: 'converged: 2/2 tasks running the new image' } } as RunEvent);
    apply({ type: 'deployed', runId: id, service, image: `127.0.0.1:5000/${pipeline}:live@${digest}`, digest, commit, at: at(t - 1.3) });
  }
  apply({ type: 'stage.finished', runId: id, stage: 'deploy', status: 'succeeded', at: at(t - 1.3) });
  apply({ type: 'run.finished', runId: id, status: 'succeeded', at: at(t - 1.3) });
  return id;
}

const subjects = ['Update the 5.2 release notes', 'Fix the search box on narrow screens', 'Add the OCaml Workshop 2025 videos', 'Bump dune to 3.17', 'Tutorials: explain effects handlers', 'Remove the old jobs page'];
const authors = ['Sabine Schmaltz', 'Cuihtlauac Alvarado', 'Thibaut Mattio', 'Christine Rose'];
let n = 1;
for (let k = 0; k < 6; k++) run('www', n++, { subject: subjects[k]!, author: authors[k % 4]!, minutesAgo: 600 - k * 90, services: ['infra_www'] });
const failedId = run('www', n++, { subject: 'Move the blog to the new data layout', author: 'Thibaut Mattio', minutesAgo: 40, fail: true });
const servingId = run('www', n++, { subject: 'Move the blog to the new data layout (fix)', author: 'Thibaut Mattio', minutesAgo: 25, services: ['infra_www'] });
for (let k = 0; k < 3; k++) run('docs', n++, { subject: `Docs for opam ${2 + k}.${k}`, author: authors[(k + 1) % 4]!, minutesAgo: 900 - k * 200, services: ['docs_web', 'docs_search'] });
const runningId = run('www', n++, { subject: 'Tutorials: a page on <Domain>s & threads', author: 'Christine Rose', minutesAgo: 1, upTo: 'build' });
run('watch', n++, { subject: 'Show the queue length', author: 'Sabine Schmaltz', minutesAgo: 300, services: ['watch_web'] });
run('watch', n++, { subject: 'Retry flaky fetches', author: 'Cuihtlauac Alvarado', minutesAgo: 120, fail: true });
run('watch', n++, { subject: 'Retry flaky fetches, again', author: 'Cuihtlauac Alvarado', minutesAgo: 80, fail: true });
store.pause('docs', 'release freeze until Friday', 'alice');
store.createRuns([{ pipeline: 'docs', trigger: 'push', commit: hex(n++), subject: 'Fix a typo in the opam manual', author: 'Christine Rose' }]);
void servingId;
// A waiting job (no worker here) keeps the running run from being failed as lost by reconcile.
const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
const queues = new RunQueues(redis, config.redisPrefix, ['www']);
await queues.enqueue({ runId: runningId, pipeline: 'www', commit: hex(0), recorded: {} });

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
// A few real actions so the audit trail has something to show.
await fetch(`${url}/api/pipelines/watch/pause`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"reason":"flaky upstream"}' });
await fetch(`${url}/api/pipelines/watch/resume`, { method: 'POST', headers: auth });
await fetch(`${url}/api/runs/rnonexistent000/cancel`, { method: 'POST', headers: auth });

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
try {
  const pages: [string, string][] = [
    ['signin', '/signin'],
    ['overview', '/'],
    ['pipeline', '/pipelines/www'],
    ['pipeline-paused', '/pipelines/docs'],
    ['run', `/runs/${failedId}`],
    ['run-live', `/runs/${runningId}`],
    ['runs', '/runs'],
    ['audit', '/audit'],
  ];
  for (const scheme of ['light', 'dark'] as const) {
    for (const [width, suffix] of [[1280, ''], [390, '-narrow']] as const) {
      const ctx = await browser.newContext({ viewport: { width, height: 900 }, colorScheme: scheme, deviceScaleFactor: 1 });
      const page = await ctx.newPage();
      await page.goto(`${url}/signin`);
      if (true) {
        await page.screenshot({ path: join(OUT, `signin-${scheme}${suffix}.png`) });
        await page.fill('#token', ADMIN_TOKEN);
        await page.click('button[type=submit]');
        await page.waitForURL(`${url}/`);
      }
      for (const [name, path] of pages.slice(1)) {
        await page.goto(`${url}${path}`);
        await page.waitForTimeout(300);
        await page.screenshot({ path: join(OUT, `${name}-${scheme}${suffix}.png`), fullPage: width > 500 });
      }
      await ctx.close();
    }
  }
  process.stdout.write(`screenshots in ${OUT}\n`);
} finally {
  await browser.close();
  await queues.close();
  redis.disconnect();
  await daemon.close();
  await disposeQueues(config);
}
