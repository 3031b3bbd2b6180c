// A real CNCF distribution registry (Debian's `docker-registry`, v2.8) per test
// run, on a free loopback port. 127.0.0.0/8 registries are trusted over plain
// HTTP by dockerd, so no insecure-registry flag is needed.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baseEnv, run, sleep } from './exec.ts';
import { startTokenServer, type TokenServer } from './token-server.ts';

export interface TestRegistry {
  /** "127.0.0.1:PORT": usable directly as an image reference prefix. */
  host: string;
  /** Empty strings when started with `auth: false`. */
  username: string;
  password: string;
  /** With `auth: 'token'`: the token service the registry sends clients to. */
  tokenServer?: TokenServer;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 10_000;

/**
 * `auth`: true (default) = htpasswd basic auth; 'token' = bearer tokens from a token
 * service (test/support/token-server.ts) for the same one account; false = open.
 */
export async function startRegistry(opts: { auth?: boolean | 'token' } = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? true;
  // The free port is found by binding :0 and releasing it, so another process
  // can grab it in between: retry with a new port instead of failing the run.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'test-registry-'));
    try {
      return await startOnce(dir, auth);
    } catch (err) {
      lastError = err;
      await rm(dir, { recursive: true, force: true });
    }
  }
  throw lastError;
}

async function startOnce(dir: string, auth: boolean | 'token'): Promise<TestRegistry> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const username = auth ? 'deployer-test' : '';
  const password = auth ? randomBytes(18).toString('base64url') : '';

  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'data'))}`,
    // Lets tests (and the deployer's garbage collection) delete manifests.
    '  delete:',
    '    enabled: true',
    // No blobdescriptor cache on purpose: with the in-memory cache a deleted
    // blob can still be reported as present and a re-push then skips it.
    'http:',
    `  addr: ${host}`,
    // A fixed secret silences the "No HTTP secret provided" warning.
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  let tokenServer: TokenServer | undefined;
  if (auth === 'token') {
    tokenServer = await startTokenServer(dir, { username, password });
    lines.push('auth:', '  token:', `    realm: ${tokenServer.realm}`, `    service: ${tokenServer.service}`, `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${JSON.stringify(tokenServer.certFile)}`);
  } else if (auth) {
    const htpasswd = await run('htpasswd', ['-Bbn', username, password], { env: baseEnv() });
    await writeFile(join(dir, 'htpasswd'), htpasswd);
    lines.push('auth:', '  htpasswd:', '    realm: deployer-test', `    path: ${JSON.stringify(join(dir, 'htpasswd'))}`);
  }
  const config = join(dir, 'config.yml');
  await writeFile(config, lines.join('\n') + '\n');

  const child = spawn('docker-registry', ['serve', config], {
    env: baseEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Keep draining both pipes (a full pipe would block the registry) but only
  // remember the tail, for the error message if it dies.
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  // 'error' (e.g. binary missing) may come without any 'exit': settle on both.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      spawnError = err;
      resolve();
    });
  });

  const stop = async (): Promise<void> => {
    await kill(child, exited);
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
  };

  const expected = auth ? 401 : 200;
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) {
      await tokenServer?.stop();
      throw new Error(`docker-registry died at start (${spawnError ?? child.exitCode ?? child.signalCode}): ${tail}`);
    }
    try {
      const res = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === expected) return { host, username, password, ...(tokenServer ? { tokenServer } : {}), stop };
      // Any other status means something else answers on that port: give up on it.
      await stop();
      throw new Error(`unexpected ${res.status} from http://${host}/v2/ (expected ${expected}): ${tail}`);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('unexpected')) throw err;
      await sleep(50);
    }
  }
  await kill(child, exited);
  await tokenServer?.stop();
  throw new Error(`docker-registry did not answer on ${host} within ${STARTUP_TIMEOUT_MS} ms: ${tail}`);
}

async function kill(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}
