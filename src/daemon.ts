import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/types.ts';
import { DockerBuilder } from './docker/build.ts';
import { createDocker } from './docker/client.ts';
import { SwarmInspector } from './docker/inspector.ts';
import { DockerSelf } from './docker/self.ts';
import { DockerPusher } from './docker/push.ts';
import { RoutingDeployer } from './docker/routing-deployer.ts';
import { GitSource } from './git/source.ts';
import { createLogger, type Logger } from './lib/logger.ts';
import type { RunPorts } from './pipeline/ports.ts';
import { DriftWatcher } from './monitor/drift.ts';
import { ControlPublisher } from './queue/control.ts';
import { EventConsumer, eventStreamKey } from './queue/event-bus.ts';
import { FollowUps } from './queue/follow-ups.ts';
import { InstanceRegistry } from './queue/instances.ts';
import { OwnerLease } from './queue/owner-lease.ts';
import { BranchPoller } from './queue/poller.ts';
import { connectRedis, waitUntilReady } from './queue/redis.ts';
import { RunQueues } from './queue/run-queue.ts';
import { Scheduler } from './queue/scheduler.ts';
import { WorkerHost } from './queue/worker-host.ts';
import { openDatabase } from './store/db.ts';
import { RunStore } from './store/run-store.ts';
import { RegistryManifests } from './registry/manifests.ts';
import { edgeChecks } from './verify/checks.ts';
import { RollbackTargetWatcher } from './verify/targets.ts';
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
  /** The worker side (worker processes only). */
  worker: WorkerHost | undefined;
  /** The consumer of worker events (HTTP process only): 'applied' tells what each batch changed. */
  events: EventConsumer | undefined;
  /** The store owner's side of the queue (HTTP process only): reconcile and retention can be run by hand. */
  scheduler: Scheduler | undefined;
  /** Whether this process owns its store now (HTTP process only): see queue/owner-lease.ts. */
  ownership: OwnerLease | undefined;
  url: string | undefined;
  close(): Promise<void>;
}

/** Ports backed by the real engine and git, as configured. */
export function realPorts(config: Config): RunPorts {
  const docker = createDocker(config.docker, { sshAuthSock: config.environment.sshAuthSock });
  return {
    source: new GitSource(config),
    builder: new DockerBuilder(docker, config.registries),
    pusher: new DockerPusher(docker, config.registries),
    deployer: new RoutingDeployer(config),
    checks: edgeChecks,
    self: new DockerSelf(docker),
  };
}

/**
 * Wires the process: the HTTP side owns the store and consumes worker events; the
 * worker side only talks to Redis, git and Docker. `serve` runs both in one process.
 */
export async function startDaemon(config: Config, opts: DaemonOptions): Promise<Daemon> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const redis = connectRedis(config.redisUrl, logger);
  const closers: (() => Promise<void>)[] = [];

  // Best effort, never in the way: a check that cannot reach Redis fails at once.
  const instances = new InstanceRegistry(redis.connect({ maxRetriesPerRequest: 1, enableOfflineQueue: false }), config, logger);
  instances.start();
  closers.push(() => instances.stop());

  let worker: WorkerHost | undefined;
  if (opts.worker) {
    worker = new WorkerHost({
      config,
      ports: realPorts(config),
      log: logger,
      // Workers wait out Redis outages instead of failing jobs.
      connection: () => redis.connect({ maxRetriesPerRequest: null }),
      prefix: config.redisPrefix,
    });
    closers.push(() => worker!.close());
  }

  let app: FastifyInstance | undefined;
  let store: RunStore | undefined;
  let live: LiveRuns | undefined;
  let integrations: Integrations | undefined;
  let consumer: EventConsumer | undefined;
  let scheduler: Scheduler | undefined;
  let ownership: OwnerLease | undefined;
  let url: string | undefined;
  if (opts.http) {
    const s = new RunStore(openDatabase(join(config.dataDir, 'deployer.db')));
    store = s;
    // Producers fail fast: a webhook must get 503 promptly when Redis is down.
    const producer = redis.connect({ maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 });
    // Without an offline queue, a command sent before the connection is ready fails at
    // once: a webhook (or /healthz) in the first milliseconds would get a needless 503.
    // So listening waits for Redis a little; a Redis that is down does not stop start-up.
    const producerReady = waitUntilReady(producer, 3000);
    const ownStream = eventStreamKey(config.redisPrefix, s.id);
    const queues = new RunQueues(producer, config, { events: ownStream });
    // Rollback targets (retention.protect newest deployments per pipeline): checked in the
    // registry every rollbackCheckInterval, and again right before a rollback to one.
    const targets = new RollbackTargetWatcher({
      check: new RegistryManifests(config.registries),
      list: () => config.pipelines.map((p) => ({ pipeline: p.name, deployments: s.deployments(p.name, 200), protect: p.retention.protect ?? 5 })),
      intervalMs: config.rollbackCheckIntervalMs ?? 0,
      log: (msg) => logger.warn(msg),
    });
    const sched = new Scheduler({ store: s, queues, control: new ControlPublisher(producer, config.redisPrefix), config, log: logger, targets });
    const poller = new BranchPoller({ config, heads: new GitSource(config), store: s, scheduler: sched, log: logger });
    scheduler = sched;
    const drift = new DriftWatcher({ config, store: s, inspector: new SwarmInspector({ sshAuthSock: config.environment.sshAuthSock }), log: logger });
    // The store's own stream first; `<prefix>:events` still carries reports of workers
    // that were given no stream (jobs queued before streams were per store).
    consumer = new EventConsumer(redis.connect({ maxRetriesPerRequest: null }), [ownStream, eventStreamKey(config.redisPrefix)], s, logger);
    const liveRuns = new LiveRuns(s, opts.live);
    live = liveRuns;
    // Every applied change — worker events and the store's own decisions — nudges live views.
    s.onApplied((events) => {
      for (const e of events) liveRuns.notify(e.runId);
    });
    // Reports, notifications and metrics observe the same applied changes (once each,
    // after they are committed); their deliveries go through a queue of their own and
    // never touch a run.
    const reports = new Integrations({ config, store: s, driftOf: (p) => drift.driftOf(p), log: logger, ...opts.reports });
    const outbound = new OutboundQueue({ producer, workerConnection: redis.connect({ maxRetriesPerRequest: null }), prefix: config.redisPrefix, storeId: s.id, handlers: reports.handlers, log: logger, ...opts.reports });
    reports.attach(outbound);
    integrations = reports;
    s.onApplied((events) => reports.applied(events));
    const followUps = new FollowUps({ store: s, config, submit: (runs) => sched.submit(runs), checkBranch: (p) => poller.refresh(p, 'poll', 'catch-up'), log: logger });
    s.onApplied((events) => followUps.applied(events));
    const c = consumer;
    // What only one process per store may do; the others (a start-first successor
    // waiting for its predecessor to stop) serve HTTP and webhooks meanwhile.
    const leaseRedis = redis.connect({ maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 });
    const leaseReady = waitUntilReady(leaseRedis, 3000);
    const lease = new OwnerLease({
      redis: leaseRedis,
      prefix: config.redisPrefix,
      storeId: s.id,
      log: logger,
      duties: {
        start() {
          c.start();
          sched.start();
          targets.start();
          poller.start();
          drift.start();
          reports.start();
        },
        async stop() {
          reports.stop();
          poller.stop();
          await drift.stop();
          await targets.stop();
          await sched.stop();
          await c.stop();
        },
      },
    });
    ownership = lease;
    c.guard(() => lease.trusted());
    const docker = createDocker(config.docker, { sshAuthSock: config.environment.sshAuthSock });
    app = await buildApp({
      config,
      store: s,
      scheduler: sched,
      poller,
      drift,
      live: liveRuns,
      targets,
      logger,
      integrations: reports,
      ownership: () => (lease.held ? 'owner' : 'standby'),
      health: [
        { name: 'redis', check: async () => void (await producer.ping()) },
        { name: 'store', check: async () => s.ping() },
        { name: 'docker', check: async () => void (await docker.ping()) },
      ],
    });
    outbound.start();
    await producerReady;
    // One try before listening (a lone deployer owns its store from the first request),
    // then in the background.
    await leaseReady;
    await lease.start();
    await app.listen({ host: config.listen.host, port: opts.port ?? config.listen.port });
    const addr = app.server.address();
    url = typeof addr === 'object' && addr ? `http://${config.listen.host}:${addr.port}` : undefined;
    closers.unshift(async () => {
      try {
        await app!.close();
      } finally {
        // Before the rest closes: a successor takes the store over at once.
        await lease.close();
      }
      await outbound.close();
      await queues.close();
      s.close();
    });
  }

  return {
    app,
    store,
    live,
    integrations,
    worker,
    events: consumer,
    scheduler,
    ownership,
    url,
    async close() {
      for (const c of closers) await c().catch((err: unknown) => logger.warn({ err }, 'error while closing'));
      redis.disconnectAll();
    },
  };
}
