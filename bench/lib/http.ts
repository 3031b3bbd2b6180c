// A sequential HTTP client for latency: one keep-alive connection, one request at a
// time, timed from the request until the last byte of the body (sub-millisecond).
import http from 'node:http';

export interface TimedResponse {
  ms: number;
  status: number;
  bytes: number;
}

export class SequentialClient {
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  readonly #base: URL;
  readonly #headers: Record<string, string>;
  /** `headers` go with every request (e.g. the admin token: pages and API need one). */
  constructor(baseUrl: string, headers: Record<string, string> = {}) {
    this.#base = new URL(baseUrl);
    this.#headers = headers;
  }

  get(path: string, timeoutMs = 30_000): Promise<TimedResponse> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = http.request(
        { host: this.#base.hostname, port: this.#base.port, path, method: 'GET', agent: this.#agent, timeout: timeoutMs, headers: this.#headers },
        (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode ?? 0, bytes }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * A slow reader: pauses `delayMs` after every chunk it receives, so a server that
   * streams with backpressure holds little, and one that buffers holds the whole body.
   */
  slowGet(path: string, delayMs: number, timeoutMs = 30_000): Promise<TimedResponse> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = http.request({ host: this.#base.hostname, port: this.#base.port, path, method: 'GET', agent: this.#agent, timeout: timeoutMs, headers: this.#headers }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (performance.now() - started > timeoutMs) return void req.destroy(new Error(`GET ${path}: slow read over ${timeoutMs} ms`));
          res.pause();
          setTimeout(() => res.resume(), delayMs);
        });
        res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode ?? 0, bytes }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Up to `count` sequential GETs, stopping early at `deadline` (epoch ms). A status not in `accept` (default 2xx) throws. */
  async measure(path: string, count: number, deadline: number, accept: (status: number) => boolean = (s) => s >= 200 && s < 300): Promise<TimedResponse[]> {
    const out: TimedResponse[] = [];
    for (let i = 0; i < count && (i === 0 || Date.now() < deadline); i++) {
      const r = await this.get(path);
      if (!accept(r.status)) throw new Error(`GET ${path} answered ${r.status}`);
      out.push(r);
    }
    return out;
  }

  close(): void {
    this.#agent.destroy();
  }
}
