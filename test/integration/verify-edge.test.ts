import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploySettings } from '../../src/config/types.ts';
import type { EdgeVerifySettings, ProbeSettings } from '../../src/config/verify.ts';
import { SwarmDeployer } from '../../src/docker/service-deployer.ts';
import { Secret } from '../../src/lib/secret.ts';
import type { ServiceDeployResult } from '../../src/pipeline/ports.ts';
import { verifyEdge } from '../../src/verify/edge.ts';
import { describeProbe, probeFailure, startProbe, type ProbeResult } from '../../src/verify/probe.ts';
import { buildAndPushCaddy, caddyLogs, createCaddyService, type CaddyService } from '../support/caddy.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import type { FileMap } from '../support/site.ts';
import { buildAndPush, cleanupLeftovers, createTestNetwork, createTestService, removeTestResources, serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';

const sha = () => randomBytes(20).toString('hex');

/**
 * The site's revision in its page (`revision <sha>` at /) and in an `X-Revision` header
 * (busybox httpd CGI at /cgi-bin/rev). `reports` lets an image lie: it serves a header
 * naming another revision than the one it was built from.
 */
function revisionSite(revision: string, reports = revision): FileMap {
  return {
    Dockerfile: [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox","--install","-s","/bin"]',
      'COPY www /www',
      'RUN ["/bin/chmod","755","/www/cgi-bin/rev"]',
      'CMD ["httpd","-f","-p","8080","-h","/www"]',
      '',
    ].join('\n'),
    'www/index.html': `revision ${revision}\n`,
    'www/cgi-bin/rev': `#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Revision: ${reports}\\r\\n\\r\\nrevision ${reports}\\n'\n`,
  };
}

interface Independent {
  /** epoch ms + status (0: no answer) of every answer autocannon got */
  answers: { at: number; status: number }[];
  stop(): Promise<void>;
}

/** autocannon through the same Caddy, at its own pace: the independent witness of each outage. */
function independentLoad(url: string): Independent {
  const answers: { at: number; status: number }[] = [];
  let finished: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finished = resolve));
  // With a callback autocannon returns its instance (events, stop); bounded to 10 minutes.
  const instance = autocannon({ url, connections: 2, overallRate: 40, duration: 600, timeout: 5 }, () => finished());
  instance.on('response', (_c, status) => answers.push({ at: Date.now(), status }));
  instance.on('reqError', () => answers.push({ at: Date.now(), status: 0 }));
  return {
    answers,
    async stop() {
      instance.stop();
      await done;
    },
  };
}

/** The longest time without a good (< 500) answer within [from, to], as the probe measures it. */
function longestGap(answers: { at: number; status: number }[], from: number, to: number): number {
  let prev = from;
  let gap = 0;
  for (const a of answers) {
    if (a.at < from || a.at > to || a.status === 0 || a.status >= 500) continue;
    gap = Math.max(gap, a.at - prev);
    prev = a.at;
  }
  return Math.max(gap, to - prev);
}

/** Caddy's own access log: what reached the edge from the probe (its User-Agent), and how it was answered. */
async function caddySawProbe(name: string, since: number): Promise<{ total: number; failed: number }> {
  let total = 0;
  let failed = 0;
  for (const line of (await caddyLogs(name, 'all')).split('\n')) {
    if (!line.includes('"http.log.access')) continue;
    const entry = JSON.parse(line.slice(line.indexOf('{'))) as { ts: number; status: number; request: { headers: Record<string, string[]> } };
    if (entry.ts * 1000 < since || entry.request.headers['User-Agent']?.[0] !== 'deployer-probe') continue;
    total++;
    if (entry.status >= 500) failed++;
  }
  return { total, failed };
}

/**
 * Issue #15, items 1 and 2, as modules on the real topology: Caddy (published in host
 * mode, plain `reverse_proxy`, access log on) in front of a swarm service reached over
 * an overlay by its dnsrr name; rollouts done by the real SwarmDeployer. The probe's
 * numbers are cross-checked against Caddy's access log (every probe request, and its
 * status) and against autocannon running through the same proxy at the same time.
 */
describe('edge verification and the downtime probe through Caddy', () => {
  let registry: TestRegistry;
  let network: string;
  let www: string;
  let caddyName: string;
  let caddy: CaddyService;
  let deployer: SwarmDeployer;
  const revs = { seed: sha(), good: sha(), liar: sha() };
  const images: Record<keyof typeof revs, string> = { seed: '', good: '', liar: '' };

  beforeAll(async () => {
    await cleanupLeftovers();
    registry = await startRegistry({ auth: true });
    network = uniqueName('ve-net');
    www = uniqueName('ve-www');
    caddyName = uniqueName('ve-caddy');
    const repo = uniqueName('ve-site');
    await createTestNetwork(network);
    const [seed, good, liar, caddyImage] = await Promise.all([
      buildAndPush(registry, repo, revisionSite(revs.seed)),
      buildAndPush(registry, repo, revisionSite(revs.good)),
      // Healthy, but reports the revision that served before it.
      buildAndPush(registry, repo, revisionSite(revs.liar, revs.good)),
      buildAndPushCaddy(registry, uniqueName('ve-caddy-img'), [], ['log {', '\toutput stderr', '\tformat json', '}']),
    ]);
    images.seed = seed!.ref;
    images.good = good!.ref;
    images.liar = liar!.ref;
    await createTestService({ name: www, image: images.seed, network, registry, healthcheck: true });
    await waitForContent(www, `revision ${revs.seed}\n`, 30_000);
    caddy = await createCaddyService({ name: caddyName, image: caddyImage!.ref, network, registry, upstream: `${www}:8080` });
    deployer = new SwarmDeployer(new Docker(), [{ host: registry.host, username: registry.username, password: new Secret(registry.password) }]);
  });

  afterAll(async () => {
    await removeTestResources([caddyName, www, network].filter(Boolean)).catch(() => undefined);
    await registry?.stop();
  });

  const settings = (order: DeploySettings['order']): DeploySettings => ({ order, monitorMs: 1_000, timeoutMs: 60_000, failureAction: 'rollback' });
  const lines: string[] = [];
  const deploy = (image: string, order: DeploySettings['order'] = 'start-first'): Promise<ServiceDeployResult> =>
    deployer.deploy({
      service: www, endpoint: { host: process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock' }, owner: { instance: 'verify-edge-test', pipeline: 'site' },
      image, registry: registry.host, settings: settings(order), signal: new AbortController().signal, log: (l) => lines.push(l),
    });
  const edge = (over: Partial<EdgeVerifySettings> = {}): EdgeVerifySettings => ({
    url: `${caddy.url}cgi-bin/rev`, expect: { header: 'X-Revision' }, timeoutMs: 8_000, intervalMs: 250, requestTimeoutMs: 3_000, ...over,
  });

  it('a good image is verified at the edge; one that reports the old revision is not, and the previous one is verified after the rollback', async () => {
    expect((await deploy(images.good)).outcome).toBe('succeeded');
    const ok = await verifyEdge({ settings: edge(), commit: revs.good, previousCommit: revs.seed });
    expect(ok).toMatchObject({ ok: true, detail: expect.stringMatching(new RegExp(`^served by the proxy: revision ${revs.good.slice(0, 12)} \\(3 answers in a row`)) });
    // Body expectations with {commit} work against the same edge.
    expect((await verifyEdge({ settings: edge({ url: caddy.url, expect: { body: 'revision {commit}', status: 200 } }), commit: revs.good })).ok).toBe(true);

    // Swarm is satisfied (health check passes) — users are not: the edge shows the old revision.
    const liar = await deploy(images.liar);
    expect(liar.outcome).toBe('succeeded');
    const bad = await verifyEdge({ settings: edge({ timeoutMs: 2_000 }), commit: revs.liar, previousCommit: revs.good });
    expect(bad.ok).toBe(false);
    expect(bad.detail).toMatch(new RegExp(`^served by the proxy: old revision ${revs.good.slice(0, 12)} \\(X-Revision\\) — not ${revs.liar.slice(0, 12)} within 2.0s`));

    // What the run does next (wired in phase 2): roll back, then verify the previous revision at the edge.
    const restored = await deployer.restore({
      service: www, endpoint: { host: process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock' }, owner: { instance: 'verify-edge-test', pipeline: 'site' },
      image: images.good, registry: registry.host, settings: settings('start-first'), signal: new AbortController().signal, log: (l) => lines.push(l),
    });
    expect(restored.outcome).toBe('rolled_back');
    expect(await serviceImage(www)).toBe(images.good);
    expect((await verifyEdge({ settings: edge({ url: caddy.url, expect: { body: 'revision {commit}' } }), commit: revs.good })).ok).toBe(true);
  });

  async function probedDeploy(image: string, order: DeploySettings['order']): Promise<{ result: ServiceDeployResult; probe: ProbeResult; from: number; to: number }> {
    const probeSettings: ProbeSettings = { url: caddy.url, ratePerSecond: 20, maxFailed: 0, requestTimeoutMs: 5_000 };
    const probe = startProbe({ settings: probeSettings });
    const from = Date.now();
    const result = await deploy(image, order);
    // Past the rollout's end, as the runner will: the old task leaves DNS 2 s before it stops.
    await new Promise((r) => setTimeout(r, 500));
    const to = Date.now();
    const r = await probe.stop();
    console.log(`${order}: ${describeProbe(r)}`);
    return { result, probe: r, from, to };
  }

  it('start-first with a health check: 0 failed across 5 deploys, as the independent load and Caddy saw too', async () => {
    const witness = independentLoad(caddy.url);
    const since = Date.now();
    const probes: ProbeResult[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const { result, probe } = await probedDeploy(i % 2 === 0 ? images.seed : images.good, 'start-first');
        expect(result.outcome).toBe('succeeded');
        probes.push(probe);
      }
    } finally {
      await witness.stop();
    }
    for (const p of probes) {
      expect(p).toMatchObject({ failed: 0 });
      expect(p.sent).toBeGreaterThan(20);
      expect(probeFailure(p, 0)).toBeUndefined();
    }
    const sent = probes.reduce((a, p) => a + p.sent, 0);
    // Caddy logged exactly the probe's requests, none answered 5xx.
    expect(await caddySawProbe(caddyName, since)).toEqual({ total: sent, failed: 0 });
    const bad = witness.answers.filter((a) => a.status === 0 || a.status >= 500);
    expect(witness.answers.length).toBeGreaterThan(100);
    expect(bad).toEqual([]);
  });

  it('stop-first: the probe records the outage and maxFailed 0 calls for a rollback; autocannon and Caddy saw the same outage', async () => {
    const witness = independentLoad(caddy.url);
    const since = Date.now();
    let run: Awaited<ReturnType<typeof probedDeploy>>;
    try {
      run = await probedDeploy(images.good, 'stop-first'); // the start-first test left seed serving
    } finally {
      await witness.stop();
    }
    const { probe, from, to } = run;
    expect(run.result.outcome).toBe('succeeded'); // swarm sees nothing wrong: only the probe does
    expect(probe.failed).toBeGreaterThan(0);
    expect(probeFailure(probe, 0)).toMatch(/^the probe saw \d+ of \d+ requests fail during the rollout/);
    expect(probeFailure(probe, undefined)).toBeUndefined();

    // Caddy's log: every probe request arrived, and exactly the ones the probe counted failed got a 5xx.
    expect(await caddySawProbe(caddyName, since)).toEqual({ total: probe.sent, failed: probe.failed });

    // autocannon, at its own pace through the same proxy, saw failures in the same window
    // and a gap of about the same length.
    const witnessFailures = witness.answers.filter((a) => a.at >= from && a.at <= to && (a.status === 0 || a.status >= 500));
    expect(witnessFailures.length).toBeGreaterThan(0);
    const startedAt = Date.parse(probe.startedAt);
    const probeFirst = startedAt + probe.failures[0]!.atMs;
    expect(Math.abs(witnessFailures[0]!.at - probeFirst)).toBeLessThan(3_000);
    const witnessGap = longestGap(witness.answers, from, to);
    console.log(`stop-first gap: probe ${probe.longestGapMs} ms, autocannon ${witnessGap} ms; failures: probe ${probe.failed}/${probe.sent}, autocannon ${witnessFailures.length}`);
    expect(Math.abs(witnessGap - probe.longestGapMs)).toBeLessThan(Math.max(1_000, 0.3 * Math.max(witnessGap, probe.longestGapMs)));
    expect(probe.longestGapMs).toBeGreaterThan(500);
  });
});
