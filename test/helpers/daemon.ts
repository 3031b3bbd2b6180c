import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { testConfig, type TestPipeline } from './config.ts';
import { createWorld, disposeQueues, type World } from './world.ts';

/** A deployer (HTTP + worker, in this process) deploying into its own test world. */
export interface WorldDeployer {
  world: World;
  config: Config;
  daemon: Daemon;
  url: string;
  /** Stops the daemon, removes its queues and the world (each step runs even if one before failed). */
  close(): Promise<void>;
}

/**
 * The block every real-engine test file started with: a world (registry, git repo,
 * network, services), a config deploying into it, a daemon on a free port. `prepare`
 * runs between the world and the daemon (e.g. a branch the poller must find).
 */
export async function startWorldDeployer(opts: {
  world: Parameters<typeof createWorld>[0];
  pipelines: (world: World) => TestPipeline[];
  prepare?: (world: World) => Promise<void>;
}): Promise<WorldDeployer> {
  const world = await createWorld(opts.world);
  let config: Config | undefined;
  let daemon: Daemon | undefined;
  const close = async () => {
    await daemon?.close().catch(() => undefined);
    if (config) await disposeQueues(config).catch(() => undefined);
    await world.dispose();
  };
  try {
    await opts.prepare?.(world);
    config = testConfig({ registry: world.registryConfig, pipelines: opts.pipelines(world) });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    return { world, config, daemon, url: daemon.url!, close };
  } catch (err) {
    await close();
    throw err;
  }
}
