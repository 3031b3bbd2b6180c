import { defineConfig } from 'vitest/config';
import LongestFirst from './test/support/longest-first.ts';

/**
 * Three projects, run in this order by scripts/test.sh (sequence.groupOrder):
 * - fast: pure logic and in-memory ports (test/unit, test/fast). No Docker, no Redis;
 *   files run in parallel; seconds. `scripts/test.sh --project fast` runs only these.
 * - integration: real Redis, git, Docker, registry, swarm, browser (test/integration,
 *   test/hostile and the support smoke test). Two files at a time: they mostly wait on
 *   the engine (rollouts, container starts), every file uses its own names, Redis prefix
 *   and ports. One at a time took 15 min before the suite doubled; two at a time, 20.5 min
 *   on a quiet 2-core machine (integration files: 1,309 s of files in 934 s); three at a
 *   time was no faster (the files are CPU-bound by then: builds, deployer starts).
 * - serial: the files whose point is a timing or a memory figure under a quiet machine
 *   (zero failed requests through Caddy during a rollout, the queue burst, RSS bounds).
 *   They run last, one at a time, with nothing beside them. (The benchmark smoke run
 *   asserts no figure, so it runs with the integration files.)
 */
const SERIAL = [
  'test/integration/zero-downtime.test.ts',
  'test/integration/queue.test.ts',
  'test/integration/retention.test.ts',
  'test/hostile/webhook-flood.test.ts',
  'test/hostile/build-output.test.ts',
  'test/hostile/log-downloads.test.ts',
];

export default defineConfig({
  test: {
    reporters: ['default'],
    // Called once per project group: only the integration files have figures to sort by.
    sequence: { sequencer: LongestFirst },
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary', 'text'],
      reportsDirectory: '.tools/coverage',
    },
    projects: [
      {
        test: {
          name: 'fast',
          sequence: { groupOrder: 0 },
          include: ['test/unit/**/*.test.ts', 'test/fast/**/*.test.ts'],
          fileParallelism: true,
          // Pure tests share no state worth a fresh module graph per file: reuse workers.
          isolate: false,
          testTimeout: 10_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/hostile/**/*.test.ts', 'test/*.test.ts'],
          exclude: SERIAL,
          sequence: { groupOrder: 1 },
          maxWorkers: 2,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'serial',
          include: SERIAL,
          sequence: { groupOrder: 2 },
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
