import type { Secret } from '../lib/secret.ts';

/** Shorter pieces are too likely to occur by chance (and too short to be a real secret). */
const MIN_MASKED = 4;

/**
 * Replaces every occurrence of a build secret in a line of build output with
 * `[secret]`, as CI services mask theirs: a Dockerfile that prints its secret must not
 * put it in the run log. A multi-line secret (a PEM key) is masked line by line too.
 */
export function secretMasker(secrets: Iterable<Secret>): (line: string) => string {
  const pieces = new Set<string>();
  for (const s of secrets) {
    const value = s.reveal();
    for (const piece of [value, value.trim(), ...value.split(/\r?\n/)]) {
      if (piece.trim().length >= MIN_MASKED) pieces.add(piece);
    }
  }
  if (pieces.size === 0) return (line) => line;
  // Longest first, so a whole value is replaced before any of its lines.
  const ordered = [...pieces].sort((a, b) => b.length - a.length);
  return (line) => {
    let out = line;
    for (const p of ordered) if (out.includes(p)) out = out.split(p).join('[secret]');
    return out;
  };
}
