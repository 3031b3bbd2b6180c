import { LineBuffer } from '../stream.ts';
import type { StatusResponse, Timestamp, Vertex, VertexLog } from './proto.ts';

/** What made a BuildKit build fail: the step, BuildKit's message, and the step's last output. */
export interface StepFailure {
  step: string;
  message: string;
  lastLines: string[];
}

interface VertexState {
  /** The `#N` of the step; 0 until it is first printed. */
  index: number;
  name: string;
  phase: 'pending' | 'running' | 'done';
  startedMs: number;
  /** Partial lines per output stream (1 stdout, 2 stderr), while running. */
  out: Map<number, LineBuffer>;
  /** The last lines of output, while running (for the error of a failing step). */
  tail: string[];
  /** Sub-statuses already reported done (transfers, export steps), while running. */
  statusesDone: Set<string>;
}

const TAIL_LINES = 10;
/** Failed steps remembered (several can fail in parallel stages). */
const MAX_FAILURES = 20;
/** The vertex BuildKit shows while importing `cachefrom` (its failure is not the build's). */
const CACHE_IMPORT = 'importing cache manifest from ';
const TAIL_LINE_CHARS = 300;
/** A misbehaving stream must not grow the per-step status set without bound. */
const MAX_STATUSES = 1000;

const ms = (t: Timestamp | null): number => (t ? t.seconds * 1000 + Math.floor(t.nanos / 1e6) : 0);

/**
 * Renders BuildKit's status stream the way `docker build --progress=plain` does: each
 * step gets a number when it starts (`#5 [stage 2/3] RUN make`), every output line is
 * prefixed with its step's number (`#5 …`), and a step ends with `#5 DONE 1.2s`,
 * `#5 CACHED`, `#5 ERROR: …` or `#5 CANCELED`. Steps running in parallel interleave
 * line by line, each line still saying whose it is.
 *
 * Memory is bounded by the size of the build graph, not by its output: a step keeps
 * only its unterminated line per stream and its last 10 lines, and drops both when it
 * ends.
 */
export class PlainProgress {
  readonly #sink: (line: string) => void;
  readonly #vertices = new Map<string, VertexState>();
  #next = 1;
  #failures: StepFailure[] = [];
  #warnings = 0;

  constructor(sink: (line: string) => void) {
    this.#sink = sink;
  }

  push(status: StatusResponse): void {
    // A message may carry a step's last output and its completion together: each step's
    // output in the message is printed right after its start and before its end, so
    // steps stay in the order BuildKit reports them and DONE follows the output.
    const logs = new Map<string, VertexLog[]>();
    for (const l of status.logs) {
      const list = logs.get(l.vertex);
      if (list) list.push(l);
      else logs.set(l.vertex, [l]);
    }
    for (const v of status.vertexes) {
      this.#start(v);
      const own = logs.get(v.digest);
      if (own && v.completed) {
        this.#output(own);
        logs.delete(v.digest);
      }
      if (v.completed) this.#complete(v);
    }
    for (const s of status.statuses) {
      const v = this.#vertices.get(s.vertex);
      if (!v || !s.completed || v.phase === 'done') continue;
      const key = s.ID;
      if (v.statusesDone.has(key) || v.statusesDone.size >= MAX_STATUSES) continue;
      v.statusesDone.add(key);
      const size = s.total > 0 ? ` ${formatBytes(s.current)} / ${formatBytes(s.total)}` : s.current > 0 ? ` ${formatBytes(s.current)}` : '';
      this.#line(v, `${s.name || s.ID}${size} done`);
    }
    for (const own of logs.values()) this.#output(own);
    for (const w of status.warnings) {
      this.#warnings++;
      const v = this.#vertices.get(w.vertex);
      const say = (text: string) => (v && v.index > 0 ? this.#line(v, text) : this.#sink(text));
      say(`WARN: ${w.short.toString('utf8')}`);
      for (const d of w.detail) for (const line of d.toString('utf8').split('\n')) if (line) say(line);
      if (w.url) say(`More info: ${w.url}`);
    }
  }

  /** Ends every step still open (the stream ended): flushes their unterminated lines. */
  finish(): void {
    for (const v of this.#vertices.values()) if (v.phase === 'running') this.#flush(v);
  }

  /**
   * The step behind the build's error: the one whose error the final message contains,
   * else the last step that failed on its own (not cancelled because another failed).
   */
  failure(finalMessage = ''): StepFailure | undefined {
    return this.#failures.findLast((f) => finalMessage.includes(f.message)) ?? this.#failures.at(-1);
  }

  get warnings(): number {
    return this.#warnings;
  }

  /** What the formatter holds now, for memory tests: steps, buffered characters, tail lines. */
  retained(): { vertices: number; pendingChars: number; tailLines: number } {
    let pendingChars = 0;
    let tailLines = 0;
    for (const v of this.#vertices.values()) {
      for (const b of v.out.values()) pendingChars += b.pendingChars;
      tailLines += v.tail.length;
    }
    return { vertices: this.#vertices.size, pendingChars, tailLines };
  }

  #register(digest: string, name: string): VertexState {
    const v: VertexState = { index: 0, name, phase: 'pending', startedMs: 0, out: new Map(), tail: [], statusesDone: new Set() };
    this.#vertices.set(digest, v);
    return v;
  }

  #start(vx: Vertex): void {
    const v = this.#vertices.get(vx.digest) ?? this.#register(vx.digest, vx.name);
    if (vx.name) v.name = vx.name;
    if (v.phase === 'pending' && (vx.started || vx.completed)) {
      v.phase = 'running';
      v.startedMs = ms(vx.started ?? vx.completed);
      if (v.index === 0) this.#header(v);
    }
  }

  #complete(vx: Vertex): void {
    const v = this.#vertices.get(vx.digest);
    if (!v || v.phase === 'done') return;
    this.#flush(v);
    if (vx.error) {
      if (/context canceled/i.test(vx.error)) this.#line(v, 'CANCELED');
      else if (v.name.startsWith(CACHE_IMPORT)) {
        // Not fatal: BuildKit builds without the cache (the first build has none to import).
        this.#line(v, `WARN: building without this cache: ${vx.error}`);
      } else {
        this.#line(v, `ERROR: ${vx.error}`);
        this.#failures.push({ step: v.name, message: vx.error, lastLines: [...v.tail] });
        if (this.#failures.length > MAX_FAILURES) this.#failures.shift();
      }
    } else if (vx.cached) this.#line(v, 'CACHED');
    else this.#line(v, `DONE ${(Math.max(0, ms(vx.completed) - v.startedMs) / 1000).toFixed(1)}s`);
    v.phase = 'done';
    v.out = new Map();
    v.tail = [];
    v.statusesDone = new Set();
  }

  /** One step's output messages (all for the same vertex). */
  #output(logs: VertexLog[]): void {
    for (const log of logs) {
      const v = this.#vertices.get(log.vertex) ?? this.#register(log.vertex, '');
      if (v.index === 0) this.#header(v);
      if (v.phase === 'done') {
        // Late output of a finished step: no buffer is kept for it any more.
        for (const line of new LineBuffer().pushBytes(log.msg)) this.#line(v, line);
        continue;
      }
      let buf = v.out.get(log.stream);
      if (!buf) v.out.set(log.stream, (buf = new LineBuffer()));
      for (const line of buf.pushBytes(log.msg)) this.#outputLine(v, line);
    }
  }

  #header(v: VertexState): void {
    v.index = this.#next++;
    this.#sink(`#${v.index} ${v.name}`);
  }

  #flush(v: VertexState): void {
    for (const b of v.out.values()) {
      const rest = b.flush();
      if (rest !== undefined) this.#outputLine(v, rest);
    }
  }

  #outputLine(v: VertexState, line: string): void {
    this.#line(v, line);
    v.tail.push(line.length > TAIL_LINE_CHARS ? `${line.slice(0, TAIL_LINE_CHARS)}…` : line);
    if (v.tail.length > TAIL_LINES) v.tail.shift();
  }

  #line(v: VertexState, text: string): void {
    this.#sink(`#${v.index} ${text}`);
  }
}

function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)}${units[unit]}`;
}
