import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { testConfig, AUTH } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { siteFiles } from '../support/site.ts';
import { serviceImage, waitForContent } from '../support/swarm.ts';
import { startWorkerNodeEngine, type WorkerNodeEngine } from '../support/worker-node-engine.ts';

const REPO = 'acme/handoff';

/**
 * Roles: a worker whose engine is not a swarm manager (a worker node's engine: here the
 * local engine behind a proxy that answers as one) builds and pushes, then hands the
 * deploy to a worker whose engine is a manager. Same config, same queue, the
 * stack.yml topology (deploy/stack.yml) on one machine.
 */
describe('build anywhere, deploy where a manager answers (real engine, registry, swarm)', () => {
  let world: World;
  let engine: WorkerNodeEngine;
  let builder: Config;
  let manager: Config;
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    world = await createWorld({ name: 'ho', services: ['ho-www'] });
    engine = await startWorkerNodeEngine();
    const shared = {
      registry: world.registryConfig,
      redisPrefix: `test-${randomBytes(6).toString('hex')}`,
      instance: 'deployer-handoff',
      pipelines: [{ name: 'site', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [world.services[0]!], deploy: { monitor: '1s', timeout: '60s' } }],
    };
    builder = testConfig({ ...shared, dockerHost: engine.host });
    manager = testConfig({ ...shared });
  });

  afterAll(async () => {
    for (const d of daemons) await d.close().catch(() => undefined);
    if (builder) await disposeQueues(builder);
    await engine?.stop();
    await world?.dispose();
  });

  it('the run is built by the non-manager worker and deployed by the manager worker', async () => {
    // Only the worker on the "worker node" at first: it takes the run.
    const http = await startDaemon(builder, { http: true, worker: true, port: 0 });
    daemons.push(http);
    await http.worker!.ready();
    const url = http.url!;
    const sha = await world.repo.commit(siteFiles('built on a worker node\n'), 'handoff');
    const runId = (await deliver(url, pushPayload(REPO, 'main', sha))).body.runs[0] as string;
    await waitUntil('the deploy is handed off', async () => /deploy handed off/.test(await runLog(url, runId)), 120_000, 200).catch(async (e: Error) => {
      throw new Error(`${e.message}\nrun: ${JSON.stringify(await (await fetch(`${url}/api/runs/${runId}`, AUTH)).json())}\nlog:\n${await runLog(url, runId)}`);
    });
    const waiting = await (await fetch(`${url}/api/runs/${runId}`, AUTH)).json();
    expect(waiting).toMatchObject({ status: 'running' });
    expect(waiting.stages.map((s: { status: string }) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'pending']);
    expect(await runLog(url, runId)).toMatch(/deploy handed off: \S+ reaches no swarm manager; a worker that does deploys .*:live@sha256:/);
    // It never tried to update the service it cannot reach.
    expect(engine.refused().filter((c) => c.startsWith('POST'))).toEqual([]);
    expect(await serviceImage(world.services[0]!)).toBe(world.seedRef);

    // A worker on a manager joins: it takes the deploy, and only the deploy.
    const deployer = await startDaemon(manager, { http: false, worker: true });
    daemons.push(deployer);
    const run = await waitForRun(url, runId, 120_000);
    expect(run).toMatchObject({ status: 'succeeded', commit: sha });
    expect(run.stages.map((s: { status: string }) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    const log = await runLog(url, runId);
    expect(log).toMatch(/deploy taken over by \S+ \(attempt 1\)/);
    expect(log.match(/sending build context/g)).toHaveLength(1); // built once, by the first worker
    expect(await serviceImage(world.services[0]!)).toBe(run.image.ref);
    await waitForContent(world.services[0]!, 'built on a worker node\n', 30_000);
    const [pipeline] = await (await fetch(`${url}/api/pipelines`, AUTH)).json();
    expect(pipeline.deployed).toMatchObject({ commit: sha, run: runId });
  });
});
