import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/queue/batcher.ts';

/** A flush that records what it was given and can be held open until released. */
function recorder() {
  const batches: number[][] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const flush = async (items: number[]) => {
    batches.push(items);
    if (hold) await new Promise<void>((r) => (release = r));
    return items.map((i) => i * 10);
  };
  return {
    batches,
    flush,
    holdNext: () => (hold = true),
    release: () => {
      hold = false;
      release?.();
    },
  };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('Batcher (group commit)', () => {
  it('flushes everything added in one event-loop turn together and answers each item in order', async () => {
    const r = recorder();
    const b = new Batcher(r.flush, { maxItems: 100 });
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => b.add(i)));
    expect(answers).toEqual([10, 20, 30, 40, 50]);
    expect(r.batches).toEqual([[1, 2, 3, 4, 5]]);
  });

  it('never overlaps flushes: items added during one go together into the next', async () => {
    const r = recorder();
    const b = new Batcher(r.flush, { maxItems: 100 });
    r.holdNext();
    const first = b.add(1);
    await turn();
    expect(r.batches).toEqual([[1]]);
    const later = [b.add(2), b.add(3)];
    await turn();
    const more = b.add(4); // another turn, same wait
    await turn();
    expect(r.batches).toEqual([[1]]);
    r.release();
    expect(await first).toBe(10);
    expect(await Promise.all([...later, more])).toEqual([20, 30, 40]);
    expect(r.batches).toEqual([[1], [2, 3, 4]]);
  });

  it('takes at most maxItems per flush; the rest follow in order', async () => {
    const r = recorder();
    const b = new Batcher(r.flush, { maxItems: 2 });
    expect(await Promise.all([1, 2, 3, 4, 5].map((i) => b.add(i)))).toEqual([10, 20, 30, 40, 50]);
    expect(r.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('a failing flush rejects every item of that batch and no other', async () => {
    let calls = 0;
    const b = new Batcher(
      async (items: string[]) => {
        if (calls++ === 0) throw new Error('store is gone');
        return items.map((s) => s.toUpperCase());
      },
      { maxItems: 10 },
    );
    const failed = [b.add('a'), b.add('b')].map((p) => p.then(() => 'resolved', (err: Error) => err.message));
    expect(await Promise.all(failed)).toEqual(['store is gone', 'store is gone']);
    expect(await b.add('c')).toBe('C');
  });

  it('rejects a batch whose flush does not answer every item', async () => {
    const b = new Batcher(async (items: number[]) => items.slice(1), { maxItems: 10 });
    const settled = await Promise.allSettled([b.add(1), b.add(2)]);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect((settled[0] as PromiseRejectedResult).reason.message).toMatch(/answered 1 of 2/);
  });

  it('refuses a batch size below one', () => {
    expect(() => new Batcher(async (items: number[]) => items, { maxItems: 0 })).toThrow(/maxItems/);
  });
});
