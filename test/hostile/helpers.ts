import { execFileSync, spawn } from 'node:child_process';
import { closeSync, createReadStream, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../../src/config/types.ts';
import { ADMIN_TOKEN } from '../helpers/config.ts';
import type { DeployerProcess } from '../helpers/process.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'deployer');

/** Resident set size of a process, in bytes (from /proc: the real number, not the heap). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kb * 1024;
}

/** Samples a process's RSS every `everyMs` until stopped; keeps the peak. */
export function sampleRss(pid: number, everyMs = 100): { peak(): number; last(): number; stop(): void } {
  let peak = 0;
  let last = 0;
  const tick = () => {
    try {
      last = rssOf(pid);
      peak = Math.max(peak, last);
    } catch {
      // the process is gone: keep what was seen
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return { peak: () => peak, last: () => last, stop: () => clearInterval(timer) };
}

export const MB = 1024 * 1024;
export const mb = (bytes: number) => `${(bytes / MB).toFixed(0)} MB`;

/** Adds YAML top-level keys to a test config file (the one a child `bin/deployer` reads). */
export function appendToConfigFile(config: Config, yaml: string): void {
  writeFileSync(config.file, `${readFileSync(config.file, 'utf8')}${yaml.endsWith('\n') ? yaml : `${yaml}\n`}`);
}

/** Every page and API request carries the admin token (pages may require it). */
export const authHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };

export async function get(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { ...authHeaders, ...(init.headers as Record<string, string> | undefined) } });
}

/** What happened to a raw HTTP request. */
export interface RawOutcome {
  /** Status line's code, if a response came. */
  status?: number;
  headers: Record<string, string>;
  body: string;
  /** When the connection ended (ms since the request started). */
  endedAfterMs?: number;
  error?: string;
}

/**
 * A hand-driven HTTP/1.1 request on its own socket, for what fetch cannot do: send
 * headers without the body, dribble a body, stop half way. `outcome` resolves when the
 * server closes the connection (or `close()` is called).
 */
export class RawRequest {
  readonly socket: Socket;
  readonly started = Date.now();
  readonly outcome: Promise<RawOutcome>;
  #raw = Buffer.alloc(0);
  #ended = false;
  #error: string | undefined;

  constructor(port: number, head: string) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.outcome = new Promise((resolve) => {
      this.socket.on('data', (d: Buffer) => (this.#raw = Buffer.concat([this.#raw, d])));
      this.socket.on('error', (err: NodeJS.ErrnoException) => (this.#error ??= err.code ?? err.message));
      this.socket.on('close', () => {
        this.#ended = true;
        resolve(this.#parse(Date.now() - this.started));
      });
    });
    this.socket.write(head);
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The response so far, if its head has arrived. */
  response(): RawOutcome | undefined {
    const r = this.#parse(undefined);
    return r.status === undefined ? undefined : r;
  }

  /** Writes, waiting for the socket to drain; false once the connection is gone. */
  async write(chunk: Buffer | string): Promise<boolean> {
    if (this.#ended || this.socket.destroyed) return false;
    const ok = this.socket.write(chunk);
    if (ok) return true;
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
        resolve(v);
      };
      const onDrain = () => done(true);
      const onClose = () => done(false);
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  #parse(endedAfterMs: number | undefined): RawOutcome {
    const text = this.#raw.toString('latin1');
    const headEnd = text.indexOf('\r\n\r\n');
    const out: RawOutcome = { headers: {}, body: '', ...(endedAfterMs !== undefined ? { endedAfterMs } : {}), ...(this.#error ? { error: this.#error } : {}) };
    if (headEnd < 0) return out;
    const [statusLine, ...lines] = text.slice(0, headEnd).split('\r\n');
    out.status = Number(statusLine!.split(' ')[1]);
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) out.headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    out.body = text.slice(headEnd + 4);
    return out;
  }
}

/** The head of a webhook POST with the given headers (null drops a default one). */
export function webhookHead(port: number, opts: { headers?: Record<string, string | null>; length?: number | 'chunked' } = {}): string {
  const headers: Record<string, string | null> = {
    host: `127.0.0.1:${port}`,
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/test',
    'x-github-event': 'push',
    'x-github-delivery': crypto.randomUUID(),
    'x-hub-signature-256': `sha256=${'ab'.repeat(32)}`,
    ...(opts.length === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(opts.length ?? 0) }),
    ...opts.headers,
  };
  const lines = Object.entries(headers).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`);
  return `POST /webhooks/github HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** One HTTP/1.1 chunk of a chunked body. */
export function chunk(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
}

/** Polls until `check` returns a value (not undefined) or the time is up. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * `bin/deployer <args>` with its stdout on a FIFO, as under Docker (the shim hands
 * containers FIFOs) or `deployer serve | logger`; spawnDeployer's stdout is a socket
 * pair, which `/proc/self/fd/1` cannot be opened on. Waits for the start-up log line.
 */
export async function spawnDeployerOnFifo(args: string[], env: NodeJS.ProcessEnv, readyMsg: 'listening' | 'worker started'): Promise<DeployerProcess & { cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'deployer-fifo-'));
  const fifo = join(dir, 'stdout');
  execFileSync('mkfifo', [fifo]);
  // Read-write: opening does not wait for a reader, and this end is the child's stdout.
  const rw = openSync(fifo, 'r+');
  const proc = spawn(BIN, args, { env, stdio: ['ignore', rw, 'pipe'] });
  closeSync(rw);
  let out = '';
  // Drained all the time, so the daemon's logging never blocks on a full pipe.
  const reader = createReadStream(fifo);
  reader.on('data', (d) => (out += d.toString()));
  reader.on('error', () => undefined);
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  const deadline = Date.now() + 20_000;
  while (!out.includes(`"msg":"${readyMsg}"`)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`deployer did not start:\n${out}`);
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
    async cleanup() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
      reader.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
