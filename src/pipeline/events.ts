import type { ProbeResult, ServiceDeployResult, VerifyResult } from './ports.ts';
import { RUN_STATUSES, STAGE_NAMES, STAGE_STATUSES, type RunStatus, type StageName, type StageStatus } from './states.ts';

/**
 * Where an event comes from: one execution of a run (one worker's take of it, a fresh
 * id each time) and the event's place in that execution's stream (1, 2, 3, …). The
 * reporter stamps every event it sends, so the store can tell a repeat (same execution,
 * a number it already applied) and a straggler (an execution that no longer holds the
 * run) from news, whatever the transport did.
 */
export interface EventStamp {
  exec?: string;
  seq?: number;
}

/**
 * What a worker reports about a run. Workers never write the store: they publish these
 * through Redis (src/queue/event-bus.ts) and the process that owns the store applies
 * them, through the run lifecycle (src/pipeline/lifecycle.ts). Times are ISO strings
 * set where the thing happened.
 */
export type RunEvent = EventStamp &
  (
    /**
     * attempt > 1: the job was retried after its worker died; stages start over.
     * phase 'deploy': a worker that can reach a swarm manager takes over a run whose
     * build another worker finished (run.handoff); the earlier stages stand.
     */
    | { type: 'run.started'; runId: string; at: string; worker: string; attempt: number; phase?: 'deploy' }
    /** Graceful shutdown put the run back in the queue before it reached deploy. */
    | { type: 'run.parked'; runId: string; at: string; reason: string }
    /** Fetch, build and push are done; the deploy waits for a worker that reaches a swarm manager. */
    | { type: 'run.handoff'; runId: string; at: string; reason: string }
    | { type: 'run.commit'; runId: string; commit: string; subject: string; author: string }
    | { type: 'stage.started'; runId: string; stage: StageName; at: string }
    | { type: 'stage.finished'; runId: string; stage: StageName; status: StageStatus; at: string; error?: string }
    | { type: 'log'; runId: string; stage: StageName | null; at: string; lines: string[] }
    | { type: 'image'; runId: string; ref: string; digest: string }
    | { type: 'service.result'; runId: string; at: string; result: ServiceDeployResult }
    /**
     * What users got (deploy.verify, deploy.probe): the edge's answer for the new commit
     * (`verify`), the probe's figures (`probe`), and after a rollback the edge's answer
     * for the previous commit (`verifyPrevious`). Each given field replaces the run's.
     */
    | { type: 'deploy.checks'; runId: string; at: string; verify?: VerifyResult; probe?: ProbeResult; verifyPrevious?: VerifyResult }
    | { type: 'deployed'; runId: string; service: string; image: string; digest: string; commit: string; at: string }
    /**
     * `branchHead`: a succeeded run whose commit was not where the branch pointed when
     * it was last checked (an older push replayed or delivered late, while the newer
     * one's run was superseded): the store deploys the head next (FollowUps, catch-up).
     */
    | { type: 'run.finished'; runId: string; status: RunStatus; at: string; error?: string; supersededBy?: string; branchHead?: string }
  );

export type RunEventType = RunEvent['type'];

/** Where a running stage sends its output, one line at a time. */
export type LineSink = (line: string) => void;

export interface RunReporter {
  emit(event: RunEvent): void;
  /** Resolves once everything emitted so far is durable in Redis. */
  flush(): Promise<void>;
}

const STRING = 'string';
const NUMBER = 'number';
type Shape = Record<string, typeof STRING | typeof NUMBER | 'string?' | 'stage?' | 'stage' | 'lines' | 'result' | 'runStatus' | 'stageStatus' | 'verify?' | 'probe?'>;

/** The fields each event type must carry (what the store relies on). */
const SHAPES: Record<RunEventType, Shape> = {
  'run.started': { runId: STRING, at: STRING, worker: STRING, attempt: NUMBER },
  'run.parked': { runId: STRING, at: STRING, reason: STRING },
  'run.handoff': { runId: STRING, at: STRING, reason: STRING },
  'run.commit': { runId: STRING, commit: STRING, subject: STRING, author: STRING },
  'stage.started': { runId: STRING, stage: 'stage', at: STRING },
  'stage.finished': { runId: STRING, stage: 'stage', status: 'stageStatus', at: STRING, error: 'string?' },
  log: { runId: STRING, stage: 'stage?', at: STRING, lines: 'lines' },
  image: { runId: STRING, ref: STRING, digest: STRING },
  'service.result': { runId: STRING, at: STRING, result: 'result' },
  'deploy.checks': { runId: STRING, at: STRING, verify: 'verify?', probe: 'probe?', verifyPrevious: 'verify?' },
  deployed: { runId: STRING, service: STRING, image: STRING, digest: STRING, commit: STRING, at: STRING },
  'run.finished': { runId: STRING, status: 'runStatus', at: STRING, error: 'string?', supersededBy: 'string?', branchHead: 'string?' },
};

const STAGES: readonly string[] = STAGE_NAMES;
const isOneOf = (values: readonly string[], v: unknown): boolean => typeof v === 'string' && values.includes(v);

/**
 * Checks that a value read from the event stream is a RunEvent the store can apply;
 * returns it, or why not. Whether it fits the run's state is the lifecycle's question.
 */
export function parseRunEvent(value: unknown): RunEvent | string {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const e = value as Record<string, unknown>;
  const shape = typeof e.type === 'string' ? SHAPES[e.type as RunEventType] : undefined;
  if (!shape) return `unknown event type ${JSON.stringify(e.type)}`;
  for (const [key, kind] of Object.entries(shape)) {
    const v = e[key];
    const ok =
      kind === 'string?' ? v === undefined || typeof v === 'string'
      : kind === 'stage' ? isOneOf(STAGES, v)
      : kind === 'stage?' ? v === null || isOneOf(STAGES, v)
      : kind === 'runStatus' ? isOneOf(RUN_STATUSES, v)
      : kind === 'stageStatus' ? isOneOf(STAGE_STATUSES, v)
      : kind === 'lines' ? Array.isArray(v) && v.every((l) => typeof l === 'string')
      : kind === 'verify?' ? v === undefined || isVerify(v)
      : kind === 'probe?' ? v === undefined || isProbe(v)
      : kind === 'result' ? typeof v === 'object' && v !== null && typeof (v as { service?: unknown }).service === 'string' && typeof (v as { outcome?: unknown }).outcome === 'string'
      : typeof v === kind;
    if (!ok) return `${e.type}: field ${key} is missing or malformed`;
  }
  if (e.exec !== undefined && typeof e.exec !== 'string') return `${e.type}: field exec is malformed`;
  if (e.seq !== undefined && !Number.isSafeInteger(e.seq)) return `${e.type}: field seq is malformed`;
  return value as RunEvent;
}

function isVerify(v: unknown): boolean {
  const o = v as Record<string, unknown>;
  return typeof v === 'object' && v !== null && typeof o.ok === 'boolean' && typeof o.detail === 'string' && typeof o.commit === 'string' && typeof o.url === 'string';
}

function isProbe(v: unknown): boolean {
  const o = v as Record<string, unknown>;
  return typeof v === 'object' && v !== null && ['sent', 'failed', 'p50Ms', 'p99Ms', 'longestGapMs'].every((k) => typeof o[k] === 'number') && typeof o.url === 'string';
}
