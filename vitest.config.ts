import { defineConfig } from 'vitest/config';

/**
 * Two projects, both run by scripts/test.sh:
 * - fast: pure logic and in-memory ports (test/unit, test/fast). No Docker, no Redis;
 *   files run in parallel; seconds. `scripts/test.sh --project fast` runs only these.
 * - integration: real Redis, git, Docker, registry, swarm, browser (test/integration and
 *   the support smoke test). They share one Docker engine and swarm on a 2-core machine:
 *   files run one after another so rollouts are not starved and timings stay meaningful.
 */
export default defineConfig({
  test: {
    reporters: ['default'],
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
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
