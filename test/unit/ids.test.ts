import { describe, expect, it } from 'vitest';
import { newId } from '../../src/store/ids.ts';

describe('newId', () => {
  it('makes ids that sort by creation even within one millisecond', () => {
    // Thousands per millisecond-ish: a tight loop makes many ids in the same ms.
    const ids = Array.from({ length: 5000 }, () => newId('r'));
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!, `${ids[i - 1]} then ${ids[i]}`).toBe(true);
    expect(ids.every((id) => /^r[a-z0-9]{8,30}$/.test(id))).toBe(true);
  });

  it('does not run ahead of the clock for long after a burst', async () => {
    for (let i = 0; i < 50; i++) newId('d');
    await new Promise((r) => setTimeout(r, 60));
    const t = parseInt(newId('d').slice(1, 9), 36);
    expect(Math.abs(t - Date.now())).toBeLessThan(50);
  });
});
