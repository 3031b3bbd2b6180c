/**
 * Why a run's work is being stopped. Passed as an AbortSignal's reason, so every
 * adapter (git, build stream, push) stops the same way, and the runner can tell a
 * user's cancel from a newer push or a shutdown.
 */
export type StopKind = 'cancel' | 'supersede' | 'shutdown';

export class StopRequest extends Error {
  readonly kind: StopKind;
  readonly supersededBy: string | undefined;
  constructor(kind: StopKind, message: string, supersededBy?: string) {
    super(message);
    this.name = 'StopRequest';
    this.kind = kind;
    this.supersededBy = supersededBy;
  }
}

export class StageTimeout extends Error {
  constructor(stage: string, ms: number) {
    super(`${stage} timed out after ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`);
    this.name = 'StageTimeout';
  }
}
