/**
 * Fleet all-or-none across a crash (issue #15, item 6). A multi-service deploy updates
 * services one after another; if a later one fails, the ones already updated are put
 * back. The runner used to remember "already updated" in memory only, so a worker
 * killed between two services and then resumed forgot them. The journal fixes that:
 *
 *   before updating service S, record S's previous image (from the spec, read at that
 *   moment) — first write wins, so a resumed attempt, which finds the NEW image already
 *   in S's spec, cannot overwrite what S really ran before;
 *   after S converged, mark it updated;
 *   when a later service fails, restore every service marked updating/updated (newest
 *   first) to its recorded previous image, and mark each restored/restore_failed.
 *
 * The journal is kept outside the worker (Redis: src/queue/checkpoints.ts), per run,
 * for as long as the run's checkpoint.
 */

export type JournalState = 'updating' | 'updated' | 'restored' | 'restore_failed';

export interface JournalEntry {
  service: string;
  /** What the service ran before this run touched it; null if it had no image. */
  previousImage: string | null;
  state: JournalState;
  /** Order in which the run began updating services (0, 1, …). */
  seq: number;
  at: string;
}

export interface FleetJournalPort {
  /**
   * Records that `service` is about to be updated from `previousImage`. If the service
   * is already in the journal (a resumed attempt), keeps the first record and returns it.
   */
  begin(runId: string, service: string, previousImage: string | null): Promise<JournalEntry>;
  /** Moves an entry to `state` (updated after convergence, restored/restore_failed after a fleet rollback). */
  mark(runId: string, service: string, state: JournalState): Promise<void>;
  /** Every entry, in the order the run began them. */
  entries(runId: string): Promise<JournalEntry[]>;
  clear(runId: string): Promise<void>;
}

/**
 * The services to bring back after `failed` failed (it handles its own rollback), newest
 * first: every other service this run began updating (including any an earlier, killed
 * attempt updated) and has not yet restored, that had a previous image.
 */
export function servicesToRestore(entries: JournalEntry[], failed: string): JournalEntry[] {
  return entries
    .filter((e) => e.service !== failed && (e.state === 'updating' || e.state === 'updated') && e.previousImage !== null)
    .sort((a, b) => b.seq - a.seq);
}
