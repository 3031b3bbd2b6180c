// Starts the deployer (src/daemon.ts startDaemon) in a child process: see daemon-child.ts.
import { join } from 'node:path';
import type { MemMessage, ReadyMessage, StartMessage } from './daemon-child.ts';
import { forkChild, type Child } from './proc.ts';

export interface DaemonProcess {
  child: Child;
  ready: ReadyMessage;
  pid: number;
  /** The child's own view of its memory; `gc: true` collects first (needs exposeGc). */
  mem(gc?: boolean): Promise<MemMessage>;
  stop(): Promise<void>;
}

export interface DaemonProcessOptions extends Omit<StartMessage, 'type'> {
  logFile: string;
  /** Log level of the daemon (production default: info). */
  logLevel?: string;
  exposeGc?: boolean;
  cpuProfDir?: string;
  profileName?: string;
}

export async function startDaemonProcess(opts: DaemonProcessOptions): Promise<DaemonProcess> {
  const { logFile, logLevel, exposeGc, cpuProfDir, profileName, ...start } = opts;
  const child = forkChild(join(import.meta.dirname, 'daemon-child.ts'), {
    logFile,
    env: { ...process.env, TEST_LOG_LEVEL: logLevel ?? 'info' },
    execArgv: exposeGc ? ['--expose-gc'] : [],
    cpuProfDir,
    profileName,
  });
  let ready: ReadyMessage;
  try {
    ready = await child.request<ReadyMessage>({ type: 'start', ...start } satisfies StartMessage, 'ready', 60_000);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return {
    child,
    ready,
    pid: child.pid,
    mem: (gc = false) => child.request<MemMessage>({ type: 'mem', gc }, 'mem', 30_000),
    stop: () => child.stop(),
  };
}
