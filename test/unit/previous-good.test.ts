import { describe, expect, it } from 'vitest';
import { previousGoodPush, type BurstRun } from '../../src/pipeline/previous-good.ts';

const run = (id: string, minute: number, status: string, trigger = 'push'): BurstRun => ({
  id, commit: `${id}`.padEnd(40, '0'), status, trigger, createdAt: `2026-01-01T00:${String(minute).padStart(2, '0')}:00.000Z`,
});

describe('onFailure: previous-good-push', () => {
  const A = run('a', 0, 'succeeded');
  const B = run('b', 1, 'superseded');
  const C = run('c', 2, 'failed');

  it('push B (good) and C (bad) together: C failed, so B is deployed', () => {
    expect(previousGoodPush([A, B, C], C, A)).toEqual({ run: B, reason: expect.stringMatching(/^run c \(c0{11}\) failed; deploying b0{11}, the newest push it had superseded/) });
  });

  it('picks the newest superseded push, never one older than what serves', () => {
    const B2 = run('b2', 3, 'superseded');
    const D = run('d', 4, 'failed');
    expect(previousGoodPush([A, B, C, B2, D], D, A)?.run.id).toBe('b2');
    expect(previousGoodPush([A, B, C, B2, D], D, run('x', 3, 'succeeded'))).toBeUndefined();
  });

  it('does nothing when a newer run exists, for rollbacks and rebuilds, or a commit already retried', () => {
    expect(previousGoodPush([A, B, C, run('e', 5, 'queued')], C, A)).toBeUndefined();
    expect(previousGoodPush([A, B, { ...C, trigger: 'rollback' }], { ...C, trigger: 'rollback' }, A)).toBeUndefined();
    expect(previousGoodPush([A, B, C], C, A, new Set([B.commit]))).toBeUndefined();
    expect(previousGoodPush([A, C], C, A)).toBeUndefined();
  });

  it('chains: if the follow-up fails too, the next older superseded push is tried, down to what serves', () => {
    const B0 = run('b0', 1, 'superseded');
    const B1 = run('b1', 2, 'superseded');
    const C3 = run('c3', 3, 'failed');
    const first = previousGoodPush([A, B0, B1, C3], C3, A)!;
    expect(first.run.id).toBe('b1');
    // The follow-up run of b1 is newer than everything and fails as well:
    const retry = { ...run('r1', 4, 'failed'), commit: B1.commit };
    expect(previousGoodPush([A, B0, B1, C3, retry], retry, A, new Set([B1.commit]))?.run.id).toBe('b0');
  });
});
