// A deployer in its own process, so the benchmark's load generator and samplers
// never share its event loop, and its RSS is its own. Started by daemon-process.ts;
// speaks over the IPC channel. Logs go to its stdout at the configured level, as in
// production (the parent points stdout at a file).
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { queueNamesOf } from '../../src/queue/run-queue.ts';
import { ADMIN_TOKEN, testConfig, WEBHOOK_SECRET, type TestPipeline } from '../../test/helpers/config.ts';

export interface StartMessage {
  type: 'start';
  pipelines: TestPipeline[];
  registry?: { host: string; username: string; password: string };
  /** Use this data dir (e.g. a store filled beforehand) instead of a fresh one. */
  dataDir?: string;
  worker: boolean;
  http: boolean;
  dockerHost?: string;
  concurrency?: number;
}

export interface ReadyMessage {
  type: 'ready';
  url: string;
  secret: string;
  adminToken: string;
  redisUrl: string;
  redisPrefix: string;
  dataDir: string;
  /** Each pipeline's run queue (named after its config's fingerprint). */
  queues: Record<string, string>;
}

export interface MemMessage {
  type: 'mem';
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

type Incoming = StartMessage | { type: 'mem'; gc?: boolean } | { type: 'stop' };

let daemon: Daemon | undefined;
const send = (msg: unknown) => process.send?.(msg);

process.on('message', (msg: Incoming) => {
  void handle(msg).catch((err: unknown) => {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  });
});
// The parent going away must not leave a daemon behind.
process.on('disconnect', () => void stop());

async function handle(msg: Incoming): Promise<void> {
  if (msg.type === 'start') {
    const config = testConfig({ pipelines: msg.pipelines, registry: msg.registry, dockerHost: msg.dockerHost });
    if (msg.dataDir) {
      // testConfig made a fresh (empty) folder: not used, so not left behind.
      rmSync(dirname(config.dataDir), { recursive: true, force: true });
      config.dataDir = msg.dataDir;
    }
    if (msg.concurrency) config.worker.concurrency = msg.concurrency;
    daemon = await startDaemon(config, { http: msg.http, worker: msg.worker, port: 0 });
    const ready: ReadyMessage = {
      type: 'ready',
      url: daemon.url ?? '',
      secret: WEBHOOK_SECRET,
      adminToken: ADMIN_TOKEN,
      redisUrl: config.redisUrl,
      redisPrefix: config.redisPrefix,
      dataDir: config.dataDir,
      queues: Object.fromEntries(config.pipelines.map((p) => [p.name, queueNamesOf(config, p.name).run])),
    };
    send(ready);
  } else if (msg.type === 'mem') {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (msg.gc && gc) gc();
    const m = process.memoryUsage();
    const reply: MemMessage = { type: 'mem', rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
    send(reply);
  } else if (msg.type === 'stop') {
    await stop();
  }
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(3), 10_000);
  try {
    await daemon?.close();
  } finally {
    clearTimeout(timer);
    // A normal exit, so that --cpu-prof writes its profile.
    process.exit(0);
  }
}
