/**
 * Group commit: items added while the event loop is busy are handed to `flush`
 * together, so work paid once per flush (a write transaction, a Redis round trip) is
 * shared by everything that arrived meanwhile.
 *
 * - A flush starts on the next `setImmediate`, i.e. after every request parsed in the
 *   current event-loop turn has been added.
 * - Flushes never overlap: items added while one is running wait for it and go into
 *   the next. That keeps their order (a later item never commits before an earlier
 *   one) and makes batches grow with the load instead of the latency.
 * - A flush takes at most `maxItems`; the rest go into the next flush right after.
 * - `flush` answers each item (same order); if it throws, every item of that flush
 *   gets the error, and later flushes are unaffected.
 */
export class Batcher<I, O> {
  readonly #flush: (items: I[]) => Promise<O[]>;
  readonly #maxItems: number;
  #pending: { item: I; resolve: (o: O) => void; reject: (err: unknown) => void }[] = [];
  #scheduled = false;
  #running = false;

  constructor(flush: (items: I[]) => Promise<O[]>, opts: { maxItems: number }) {
    if (!(opts.maxItems >= 1)) throw new Error('maxItems must be at least 1');
    this.#flush = flush;
    this.#maxItems = opts.maxItems;
  }

  /** Items added and not yet handed to a flush. */
  get pending(): number {
    return this.#pending.length;
  }

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#running || this.#pending.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    const batch = this.#pending.splice(0, this.#maxItems);
    try {
      const results = await this.#flush(batch.map((p) => p.item));
      if (results.length !== batch.length) throw new Error(`flush answered ${results.length} of ${batch.length} items`);
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.#running = false;
      this.#schedule();
    }
  }
}
