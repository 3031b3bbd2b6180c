import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config/types.ts';
import { createDocker } from './docker/client.ts';
import { DockerBuilder } from './docker/build.ts';
import { DockerPusher } from './docker/push.ts';
import { RoutingDeployer } from './docker/routing-deployer.ts';
import { GitSource } from './git/source.ts';
import { createLogger, type Logger } from './lib/logger.ts';
import type { RunEvent } from './pipeline/events.ts';
import type { RunPorts } from './pipeline/ports.ts';
import { EventConsumer } from './queue/event-bus.ts';
import { ControlPublisher } from './queue/control.ts';
import { RunQueues } from './queue/run-queue.ts';
import { SwarmInspector } from './docker/inspector.ts';
import { DriftWatcher } from './monitor/drift.ts';
import { BranchPoller } from './queue/poller.ts';
import { Scheduler } from './queue/scheduler.ts';
import { WorkerHost } from './queue/worker-host.ts';
import { openDatabase } from './store/db.ts';
import { RunStore } from './store/run-store.ts';
import { buildApp } from './web/app.ts';
import { LiveRuns, type LiveRunsOptions } from './web/live.ts';
import { Integrations, type IntegrationsOptions } from './report/integrations.ts';
import { OutboundQueue, type OutboundOptions } from './queue/outbound.ts';

export interface DaemonOptions {
  http: boolean;
  worker: boolean;
  logger?: Logger;
  /** Port override (tests listen on 0). */
  port?: number;
  /** Live view limits and timings (tests shorten them). */
  live?: LiveRunsOptions;
  /** Report queue retry timings and the reports' sweep (tests shorten them). */
  reports?: OutboundOptions & IntegrationsOptions;
}

export interface Daemon {
  app: FastifyInstance | undefined;
  store: RunStore | undefined;
  /** Live run views (HTTP process only). */
  live: LiveRuns | undefined;
  /** GitHub reports, notifications, metrics (HTTP process only). */
  integrations: Integrations | undefined;
  url: string | undefined;
  close(): Promise<void>;
}

/** Ports backed by the real engine and git, as configured. */
export function realPorts(config: Config): RunPorts {
  const docker = createDocker(config.docker);
  return {
    source: new GitSource(config),
    builder: new DockerBuilder(docker, config.registries),
    pusher: new DockerPusher(docker, config.registries),
    deployer: new RoutingDeployer(config),
  };
}

/**
 * Wires the process: the HTTP side owns the store and consumes worker events; the
 * worker side only talks to Redis, git and Docker. `serve` runs both in one process.
 */
export async function startDaemon(config: Config, opts: DaemonOptions): Promise<Daemon> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const redisOpts = (extra: RedisOptions): RedisOptions => ({ lazyConnect: false, ...extra });
  const connections: Redis[] = [];
  const connect = (extra: RedisOptions) => {
    const r = new Redis(config.redisUrl, redisOpts(extra));
    r.on('error', (err) => logger.debug({ err: { message: err.message } }, 'redis connection error'));
    connections.push(r);
    return r;
  };
  const closers: (() => Promise<void>)[] = [];

  let worker: WorkerHost | undefined;
  if (opts.worker) {
    worker = new WorkerHost({
      config,
      ports: realPorts(config),
      log: logger,
      // Workers wait out Redis outages instead of failing jobs.
      connection: () => connect({ maxRetriesPerRequest: null }),
      prefix: config.redisPrefix,
    });
    closers.push(() => worker!.close());
  }

  let app: FastifyInstance | undefined;
  let store: RunStore | undefined;
  let live: LiveRuns | undefined;
  let integrations: Integrations | undefined;
  let url: string | undefined;
  if (opts.http) {
    store = new RunStore(openDatabase(join(config.dataDir, 'deployer.db')));
    // Producers fail fast: a webhook must get 503 promptly when Redis is down.
    const producer = connect({ maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 });
    // Without an offline queue, a command sent before the connection is ready fails at
    // once: a webhook (or /healthz) in the first milliseconds would get a needless 503.
    // So listening waits for Redis a little; a Redis that is down does not stop start-up.
    const producerReady = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        producer.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, 3000);
      producer.once('ready', done);
    });
    const queues = new RunQueues(producer, config.redisPrefix, config.pipelines.map((p) => p.name));
    const scheduler = new Scheduler({ store, queues, control: new ControlPublisher(producer, config.redisPrefix), config, log: logger });
    const poller = new BranchPoller({ config, heads: new GitSource(config), store, scheduler, log: logger });
    const drift = new DriftWatcher({ config, store, inspector: new SwarmInspector(), log: logger });
    const s = store;
    const consumer = new EventConsumer(
      connect({ maxRetriesPerRequest: null }),
      config.redisPrefix,
      (events) => {
        for (const e of events) {
          if (!s.apply(e)) logger.warn({ run: e.runId, event: e.type }, 'ignored event that does not fit the run state');
        }
      },
      logger,
    );
    const liveRuns = new LiveRuns(s, opts.live);
    live = liveRuns;
    consumer.on('event', (e: RunEvent) => liveRuns.notify(e.runId));
    // Reports, notifications and metrics observe applied events; their deliveries go
    // through a queue of their own and never touch a run.
    const reports = new Integrations({ config, db: s.db, store: s, driftOf: (p) => drift.driftOf(p), log: logger, ...opts.reports });
    const outbound = new OutboundQueue({ producer, workerConnection: connect({ maxRetriesPerRequest: null }), prefix: config.redisPrefix, handlers: reports.handlers, log: logger, ...opts.reports });
    reports.attach(outbound);
    integrations = reports;
    consumer.on('event', (e: RunEvent) => reports.applied(e));
    consumer.start();
    const docker = createDocker(config.docker);
    app = await buildApp({
      config,
      store,
      scheduler,
      poller,
      drift,
      live: liveRuns,
      logger,
      integrations: reports,
      health: [
        { name: 'redis', check: async () => void (await producer.ping()) },
        { name: 'store', check: async () => void s.db.prepare('SELECT 1').get() },
        { name: 'docker', check: async () => void (await docker.ping()) },
      ],
    });
    scheduler.start();
    poller.start();
    drift.start();
    reports.start();
    outbound.start();
    await producerReady;
    await app.listen({ host: config.listen.host, port: opts.port ?? config.listen.port });
    const addr = app.server.address();
    url = typeof addr === 'object' && addr ? `http://${config.listen.host}:${addr.port}` : undefined;
    closers.unshift(async () => {
      await app!.close();
      poller.stop();
      await drift.stop();
      await scheduler.stop();
      await consumer.stop();
      reports.stop();
      await outbound.close();
      await queues.close();
      s.db.close();
    });
  }

  return {
    app,
    store,
    live,
    integrations,
    url,
    async close() {
      for (const c of closers) await c().catch((err) => logger.warn({ err: { message: (err as Error).message } }, 'error while closing'));
      for (const r of connections) r.disconnect();
    },
  };
}
