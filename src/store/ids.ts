import { randomBytes } from 'node:crypto';

let lastMs = 0;
let counter = 0;
const COUNTER_MAX = 36 ** 3 - 1;

/**
 * Run and deployment ids: a letter prefix (BullMQ rejects ids that look like integers),
 * then time in base36 and a counter within the millisecond, so ids sort by creation
 * (the store owner makes every id, and "is this run newer" compares ids), then
 * randomness. No ":" (BullMQ's separator).
 */
export function newId(prefix: 'r' | 'd'): string {
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = 0;
  } else if (++counter > COUNTER_MAX) {
    lastMs++; // 46,656 ids in one millisecond: borrow the next one
    counter = 0;
  }
  const rand = BigInt(`0x${randomBytes(6).toString('hex')}`).toString(36).padStart(10, '0');
  return `${prefix}${lastMs.toString(36)}${counter.toString(36).padStart(3, '0')}${rand}`;
}
