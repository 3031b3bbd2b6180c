import { describe, expect, it } from 'vitest';
import { assessRollout, STATUS_GRACE_MS, type RolloutSnapshot, type TaskSnapshot } from '../../src/docker/rollout.ts';

const NEW = 'reg/site:live@sha256:' + 'b'.repeat(64);
const OLD = 'reg/site:live@sha256:' + 'a'.repeat(64);
const task = (image: string, state: string, desiredState = 'running', extra: Partial<TaskSnapshot> = {}): TaskSnapshot => ({
  id: Math.random().toString(36).slice(2), image, state, desiredState, err: undefined, message: undefined, exitCode: undefined, ...extra,
});
const snap = (over: Partial<RolloutSnapshot>): RolloutSnapshot => ({
  updateStatus: undefined, previousStartedAt: undefined, tasks: [], target: NEW, replicas: 1, elapsedMs: 1000, ...over,
});
const status = (State: string, StartedAt = '2026-11-27T01:00:00Z', Message?: string) => ({ State, StartedAt, ...(Message ? { Message } : {}) });

describe('rollout assessment', () => {
  it('waits while UpdateStatus is still empty right after the update', () => {
    expect(assessRollout(snap({ tasks: [task(OLD, 'running')] })).kind).toBe('waiting');
  });

  it('does not trust an UpdateStatus left over from the previous update', () => {
    const old = status('completed', '2026-11-27T00:00:00Z');
    const v = assessRollout(snap({ updateStatus: old, previousStartedAt: old.StartedAt, tasks: [task(OLD, 'running')], elapsedMs: 100 }));
    expect(v.kind).toBe('waiting');
  });

  it('converges on completed with the new task running (start-first: old task still shutting down)', () => {
    const v = assessRollout(snap({ updateStatus: status('completed'), tasks: [task(NEW, 'running'), task(OLD, 'running', 'shutdown')] }));
    expect(v.kind).toBe('converged');
  });

  it('is not converged when completed but fewer new tasks run than replicas', () => {
    const v = assessRollout(snap({ updateStatus: status('completed'), replicas: 2, tasks: [task(NEW, 'running'), task(NEW, 'starting')] }));
    expect(v.kind).toBe('waiting');
  });

  it('keeps watching through rollback_started and reports rollback_completed as a failure with task errors', () => {
    const failed = task(NEW, 'failed', 'shutdown', { err: 'task: non-zero exit (1)', exitCode: 1 });
    expect(assessRollout(snap({ updateStatus: status('rollback_started'), tasks: [failed, task(OLD, 'running')] })).kind).toBe('rolling_back');
    const v = assessRollout(snap({ updateStatus: status('rollback_completed', undefined, 'update rolled back due to failure'), tasks: [failed, task(OLD, 'running')] }));
    expect(v).toMatchObject({ kind: 'failed', taskErrors: ['task: non-zero exit (1)'] });
    if (v.kind === 'failed') expect(v.reason).toMatch(/rolled the service back/);
  });

  it('treats a paused update as failed', () => {
    expect(assessRollout(snap({ updateStatus: status('paused', undefined, 'update paused due to failure') })).kind).toBe('failed');
  });

  it('keeps waiting on a pending task: only the deployer timeout ends that', () => {
    const v = assessRollout(snap({ updateStatus: status('updating'), tasks: [task(NEW, 'pending'), task(OLD, 'running')], elapsedMs: 10 * 60_000 }));
    expect(v).toMatchObject({ kind: 'waiting' });
    if (v.kind === 'waiting') expect(v.detail).toMatch(/1 pending/);
  });

  it('falls back to tasks when no UpdateStatus ever appears (spec unchanged)', () => {
    const v = assessRollout(snap({ elapsedMs: STATUS_GRACE_MS + 1, tasks: [task(NEW, 'running')] }));
    expect(v.kind).toBe('converged');
  });
});
