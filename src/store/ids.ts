import { randomBytes } from 'node:crypto';

/**
 * Run and deployment ids: a letter prefix (BullMQ rejects ids that look like integers),
 * then time in base36 so ids sort by creation, then randomness. No ":" (BullMQ's separator).
 */
export function newId(prefix: 'r' | 'd'): string {
  const rand = BigInt(`0x${randomBytes(6).toString('hex')}`).toString(36).padStart(10, '0');
  return `${prefix}${Date.now().toString(36)}${rand}`;
}
