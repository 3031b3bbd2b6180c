import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { waitForRun } from '../helpers/runs.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, siteFiles, type SiteRepo } from '../support/site.ts';
import { buildAndPushSeed, cleanupLeftovers, createTestNetwork, createTestService, removeTestResources, serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';
import { disposeQueues } from '../helpers/world.ts';

const run = promisify(execFile);

/** A CA, a server certificate for 127.0.0.1 and a client certificate, as a Docker TLS setup has. */
async function makeCerts(dir: string): Promise<void> {
  const o = (args: string[]) => run('openssl', args, { cwd: dir });
  await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca-key.pem', '-out', 'ca.pem']);
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await o(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server-key.pem', '-out', 'server.csr']);
  await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1', '-extfile', 'san.cnf', '-out', 'server.pem']);
  writeFileSync(join(dir, 'client.cnf'), 'extendedKeyUsage=clientAuth\n');
  await o(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=deployer', '-keyout', 'key.pem', '-out', 'client.csr']);
  await o(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1', '-extfile', 'client.cnf', '-out', 'cert.pem']);
}

/**
 * Per-service Docker endpoints over tcp:// with mutual TLS. No second machine exists
 * here, so the "remote" engine is this machine's engine behind a TLS proxy that
 * demands a client certificate: the deployer's TLS client path and its routing of each
 * service to its own endpoint are real; a second host is not.
 */
describe('a service on another Docker endpoint (tcp:// + TLS)', () => {
  let dir: string;
  let proxy: Server;
  let connections = 0;
  let registry: TestRegistry;
  let repo: SiteRepo;
  let network: string;
  const services = { local: '', remote: '' };
  let config: Config;
  let daemon: Daemon;

  beforeAll(async () => {
    await cleanupLeftovers();
    dir = mkdtempSync(join(tmpdir(), 'tls-'));
    await makeCerts(dir);
    const socket = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace('unix://', '');
    proxy = createServer(
      { key: readFileSync(join(dir, 'server-key.pem')), cert: readFileSync(join(dir, 'server.pem')), ca: readFileSync(join(dir, 'ca.pem')), requestCert: true, rejectUnauthorized: true },
      (tlsSocket) => {
        connections++;
        const upstream = connect(socket);
        tlsSocket.pipe(upstream).pipe(tlsSocket);
        upstream.on('error', () => tlsSocket.destroy());
        tlsSocket.on('error', () => upstream.destroy());
      },
    );
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;

    registry = await startRegistry({ auth: true });
    repo = await createSiteRepo();
    network = uniqueName('ep-net');
    services.local = uniqueName('ep-local');
    services.remote = uniqueName('ep-remote');
    const imageRepo = uniqueName('ep-site');
    await createTestNetwork(network);
    const seed = await buildAndPushSeed(registry, imageRepo, 'seed\n');
    await createTestService({ name: services.local, image: seed.ref, network, registry });
    await createTestService({ name: services.remote, image: seed.ref, network, registry });
    const base = testConfig({
      registry: { host: registry.host, username: registry.username, password: registry.password },
      pipelines: [{ name: 'site', repo: 'acme/ep', url: repo.url, image: `${registry.host}/${imageRepo}`, tag: 'live', services: [services.local], deploy: { monitor: '1s', timeout: '60s' } }],
    });
    // The same file, with the second service on the TLS endpoint (TLS paths relative to the config).
    const text = readFileSync(base.file, 'utf8').replace(
      `services: ["${services.local}"]`,
      `services: ["${services.local}", { name: "${services.remote}", docker: { host: "tcp://127.0.0.1:${port}", tls: { ca: ${dir}/ca.pem, cert: ${dir}/cert.pem, key: ${dir}/key.pem } } }]`,
    );
    writeFileSync(base.file, text);
    config = parseConfig(text, base.file, { GITHUB_WEBHOOK_SECRET: (await import('../helpers/config.ts')).WEBHOOK_SECRET, DEPLOYER_ADMIN_TOKEN: (await import('../helpers/config.ts')).ADMIN_TOKEN, REGISTRY_PASSWORD: registry.password });
    expect(config.pipelines[0]!.targets[1]!.docker.host).toBe(`tcp://127.0.0.1:${port}`);
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
  });

  afterAll(async () => {
    await daemon?.close();
    await disposeQueues(config);
    proxy?.close();
    await removeTestResources([services.local, services.remote, network]).catch(() => undefined);
    await registry?.stop();
    await repo?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deploys each service through its own endpoint, and both end on the new digest', async () => {
    const sha = await repo.commit(siteFiles('two endpoints\n'), 'two endpoints');
    const r = await waitForRun(daemon.url!, (await deliver(daemon.url!, pushPayload('acme/ep', 'main', sha))).body.runs[0]);
    expect(r.status).toBe('succeeded');
    expect(r.deploys.map((d: any) => [d.service, d.outcome])).toEqual([[services.local, 'succeeded'], [services.remote, 'succeeded']]);
    expect(connections).toBeGreaterThan(0); // the remote service really went through TLS
    expect(await serviceImage(services.remote)).toBe(r.image.ref);
    await waitForContent(services.remote, 'two endpoints\n', 30_000);
  });
});
