import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate } from '../../src/store/db.ts';
import { labelOf } from '../../src/notify/notifier.ts';
import { Secret } from '../../src/lib/secret.ts';

/**
 * Migration 025: labels written before it named the webhook URL's path (where services
 * put tokens); afterwards every stored label reads as `labelOf` writes it now.
 */
describe('migration 025: stored webhook labels lose their path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('rewrites old labels as labelOf writes them, leaves Slack and new-style labels alone', () => {
    for (const f of readdirSync(MIGRATIONS_DIR)) if (/^\d+_/.test(f) && Number(f.split('_')[0]) < 25) copyFileSync(join(MIGRATIONS_DIR, f), join(dir, f));
    const db = new DatabaseSync(':memory:');
    migrate(db, dir);
    const insert = db.prepare("INSERT INTO notifications (id, dedupe, pipeline, target, channel, label, event, body, created_at) VALUES (?, ?, 'site', ?, ?, ?, 'failed', '{}', '2026-01-01')");
    const rows: [number, string, string][] = [
      [1, 'webhook', 'webhook https://discord.com/api/webhooks/123/SECRET-TOKEN'],
      [2, 'webhook', 'webhook http://127.0.0.1:4567/'],
      [0, 'slack', 'slack (notify[0])'],
      [3, 'webhook', 'webhook https://h.example:8443/… (notify[3])'],
    ];
    rows.forEach(([target, channel, label], i) => insert.run(`n${i}`, `d${i}`, target, channel, label));
    migrate(db, MIGRATIONS_DIR);
    const labels = (db.prepare('SELECT label FROM notifications ORDER BY id').all() as { label: string }[]).map((r) => r.label);
    const secret = new Secret('s');
    const now = (url: string, index: number) => labelOf({ kind: 'webhook', url, secret, index, on: ['failed'], pipelines: undefined, timeoutMs: 1000 });
    expect(labels).toEqual([
      now('https://discord.com/api/webhooks/123/SECRET-TOKEN', 1),
      now('http://127.0.0.1:4567/', 2),
      'slack (notify[0])',
      'webhook https://h.example:8443/… (notify[3])',
    ]);
    expect(labels[0]).toBe('webhook https://discord.com/… (notify[1])');
    expect(labels[1]).toBe('webhook http://127.0.0.1:4567 (notify[2])');
  });
});
