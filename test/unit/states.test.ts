import { describe, expect, it } from 'vitest';
import { canTransitionRun, canTransitionStage, isTerminal, RUN_STATUSES } from '../../src/pipeline/states.ts';

describe('run state transitions', () => {
  it('moves queued → running → terminal', () => {
    expect(canTransitionRun('queued', 'running')).toBe(true);
    for (const t of ['succeeded', 'failed', 'cancelled'] as const) expect(canTransitionRun('running', t)).toBe(true);
  });

  it('never leaves a terminal state', () => {
    for (const from of RUN_STATUSES.filter(isTerminal)) {
      for (const to of RUN_STATUSES) expect(canTransitionRun(from, to), `${from} -> ${to}`).toBe(false);
    }
    expect(RUN_STATUSES.filter(isTerminal)).toEqual(['succeeded', 'failed', 'cancelled', 'superseded', 'rolled_back']);
  });

  it('does not let a queued run succeed without running', () => {
    expect(canTransitionRun('queued', 'succeeded')).toBe(false);
    expect(canTransitionRun('queued', 'failed')).toBe(true);
  });

  it('lets a running run be superseded (cancelSuperseded) or parked back to queued (shutdown)', () => {
    expect(canTransitionRun('running', 'superseded')).toBe(true);
    expect(canTransitionRun('running', 'queued')).toBe(true);
    expect(canTransitionRun('superseded', 'running')).toBe(false);
  });

  it('lets stages finish only from running', () => {
    expect(canTransitionStage('pending', 'succeeded')).toBe(false);
    expect(canTransitionStage('running', 'failed')).toBe(true);
    expect(canTransitionStage('pending', 'skipped')).toBe(true);
  });
});
