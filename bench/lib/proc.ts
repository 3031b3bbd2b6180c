// Child processes of the benchmark (daemon, bare server, docker proxy) and memory
// readings from /proc. Every child is ended by its own pid, never by name.
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Child {
  pid: number;
  proc: ChildProcess;
  /** Sends `msg` and resolves with the first message of type `replyType`. */
  request<T>(msg: unknown, replyType: string, timeoutMs?: number): Promise<T>;
  /** Asks the child to stop (message `stop`), then SIGTERM, then SIGKILL. */
  stop(): Promise<void>;
}

export interface ForkOptions {
  env?: NodeJS.ProcessEnv;
  args?: string[];
  /** stdout and stderr go here (appended). */
  logFile: string;
  execArgv?: string[];
  /** --cpu-prof into this directory, profile named after `profileName`. */
  cpuProfDir?: string;
  profileName?: string;
}

export function forkChild(file: string, opts: ForkOptions): Child {
  const fd = openSync(opts.logFile, 'a');
  const execArgv = [...(opts.execArgv ?? [])];
  if (opts.cpuProfDir) {
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`);
    if (opts.profileName) execArgv.push(`--cpu-prof-name=${opts.profileName}.cpuprofile`);
  }
  const proc = fork(file, opts.args ?? [], { execArgv, env: opts.env ?? process.env, stdio: ['ignore', fd, fd, 'ipc'] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    proc.once('exit', () => resolve());
  });
  proc.on('error', () => undefined);
  const child: Child = {
    pid: proc.pid ?? -1,
    proc,
    request<T>(msg: unknown, replyType: string, timeoutMs = 60_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${file}: no "${replyType}" reply within ${timeoutMs} ms (log: ${opts.logFile})`));
        }, timeoutMs);
        const onMessage = (m: { type?: string; message?: string }) => {
          if (m?.type === replyType) {
            cleanup();
            resolve(m as T);
          } else if (m?.type === 'error') {
            cleanup();
            reject(new Error(`${file}: ${m.message}`));
          }
        };
        const onExit = (code: number | null, signal: string | null) => {
          cleanup();
          reject(new Error(`${file} exited (${code ?? signal}) before replying "${replyType}"; log: ${opts.logFile}\n${tail(opts.logFile)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          proc.off('message', onMessage);
          proc.off('exit', onExit);
        };
        proc.on('message', onMessage);
        proc.once('exit', onExit);
        if (msg !== undefined) proc.send(msg as never);
      });
    },
    async stop(): Promise<void> {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      try {
        proc.send({ type: 'stop' });
      } catch {
        /* channel already closed */
      }
      const term = setTimeout(() => proc.kill('SIGTERM'), 12_000);
      const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(term);
      clearTimeout(kill);
    },
  };
  return child;
}

export function tail(file: string, chars = 3000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-chars);
  } catch {
    return '';
  }
}

export interface ProcMemory {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak RSS since start or since the last resetPeak(), bytes. */
  hwm: number;
}

export function readMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets the kernel's peak-RSS counter (VmHWM) of `pid` to its current RSS. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS every `intervalMs` until stopped; bounded to `maxSamples`. */
export function sampleRss(pid: number, intervalMs = 50, maxSamples = 100_000): { stop(): { max: number; samples: { t: number; rss: number }[] } } {
  const samples: { t: number; rss: number }[] = [];
  const timer = setInterval(() => {
    if (samples.length >= maxSamples) return;
    try {
      samples.push({ t: Date.now(), rss: readMemory(pid).rss });
    } catch {
      /* process gone */
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return { max: Math.max(0, ...samples.map((s) => s.rss)), samples };
    },
  };
}

export const MiB = 1024 * 1024;
export const toMiB = (bytes: number): number => bytes / MiB;

export const benchDir = join(import.meta.dirname, '..');

/** CPU time (user + system) used so far by `pid`, in ms (from /proc/PID/stat, 100 ticks/s). */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
