import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'deployer');

export interface DeployerProcess {
  proc: ChildProcess;
  /** Everything it printed so far (pino JSON lines). */
  output(): string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/** Starts `bin/deployer <args>` as a real process and waits for its start-up log line. */
export async function spawnDeployer(args: string[], env: NodeJS.ProcessEnv, readyMsg: 'listening' | 'worker started'): Promise<DeployerProcess> {
  const proc = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  // Generous: on a loaded 2-core machine a cold start (type stripping every module) can take long.
  const deadline = Date.now() + 60_000;
  while (!out.includes(`"msg":"${readyMsg}"`)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      // Never leave a half-started daemon behind (it would hold its port and Redis prefix).
      if (proc.exitCode === null) proc.kill('SIGKILL');
      throw new Error(`deployer did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    output: () => out,
    exited,
    async kill(signal) {
      proc.kill(signal);
      return exited;
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
