import { readSse, type SseMessage } from '../lib/sse.ts';

/** Exit codes scripts can rely on (documented in the README). */
export const EXIT = {
  ok: 0,
  /** The server refused what was asked: no such pipeline or run, a conflict (e.g. cancelling a finished run), bad input. */
  refused: 1,
  usage: 2,
  /** Not signed in (no or wrong token) or the token's role may not do this. */
  auth: 3,
  /** The server could not be reached, or failed (5xx, 503 queue unavailable). */
  unavailable: 4,
  /** `logs --follow`: the run ended, but not succeeded. */
  runNotSucceeded: 5,
} as const;

export class ApiError extends Error {
  readonly exitCode: number;
  readonly status: number | undefined;
  constructor(message: string, exitCode: number, status?: number) {
    super(message);
    this.exitCode = exitCode;
    this.status = status;
  }
}

/** The deployer's HTTP API, as the CLI uses it: JSON in, JSON out, errors as exit codes. */
export class ApiClient {
  readonly #server: string;
  readonly #token: string;

  constructor(server: string, token: string) {
    this.#server = server;
    this.#token = token;
  }

  get url(): string {
    return this.#server;
  }

  async #fetch(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`${this.#server}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.#token}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new ApiError(`cannot reach ${this.#server}: ${cause}`, EXIT.unavailable);
    }
  }

  async #check(res: Response, what: string): Promise<Response> {
    if (res.ok) return res;
    const text = await res.text().catch(() => '');
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      /* not JSON */
    }
    const code = res.status === 401 || res.status === 403 ? EXIT.auth : res.status >= 500 ? EXIT.unavailable : EXIT.refused;
    throw new ApiError(`${what}: ${message || `HTTP ${res.status}`} (HTTP ${res.status})`, code, res.status);
  }

  async get<T>(path: string): Promise<T> {
    return (await (await this.#check(await this.#fetch('GET', path), `GET ${path.split('?')[0]}`)).json()) as T;
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    return (await (await this.#check(await this.#fetch('POST', path, body), `POST ${path}`)).json()) as T;
  }

  /** The whole log, streamed to `write`. */
  async log(runId: string, write: (text: string) => void): Promise<void> {
    const res = await this.#check(await this.#fetch('GET', `/api/runs/${encodeURIComponent(runId)}/log`), 'GET log');
    const decoder = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) write(decoder.decode(chunk, { stream: true }));
  }

  /**
   * A run's events from the start of its log; reconnects from the last event id when
   * the connection drops (a server restart), a few times.
   */
  async *events(runId: string): AsyncGenerator<SseMessage> {
    let after = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const m of readSse(`${this.#server}/api/runs/${encodeURIComponent(runId)}/events?after=${after}`, { headers: { authorization: `Bearer ${this.#token}` } })) {
          attempt = 0;
          if (m.event === 'log' && m.id) after = Number(m.id);
          yield m;
          if (m.event === 'end' || m.event === 'gone') return;
        }
        return;
      } catch (err) {
        const status = /HTTP (\d{3})/.exec((err as Error).message)?.[1];
        if (status === '204') return; // reconnected to a run that is over: nothing more to send
        if (status === '401' || status === '403') throw new ApiError(`follow ${runId}: not allowed (HTTP ${status})`, EXIT.auth, Number(status));
        if (status === '404') throw new ApiError(`no run "${runId}"`, EXIT.refused, 404);
        if (status === '400') throw new ApiError(`"${runId}" is not a run id`, EXIT.refused, 400);
        if (attempt >= 5) throw new ApiError(`lost the event stream of ${runId}: ${(err as Error).message}`, EXIT.unavailable);
        await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
      }
    }
  }
}
