// Times every git process: a `git` wrapper first on PATH records start and end
// (bash's $EPOCHREALTIME, no extra process) of each call, then runs the real git.
// The deployer (simple-git) and the hand-run baseline find it through PATH alike.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface GitCall {
  start: number;
  end: number;
  command: string;
}

export interface GitTiming {
  /** Prepend to PATH. */
  binDir: string;
  calls(since?: number): GitCall[];
  /** Restores PATH. */
  uninstall(): void;
}

/** Installs the wrapper into `process.env.PATH` (the deployer reads PATH when it spawns git). */
export function installGitTiming(dir: string): GitTiming {
  const realGit = execFileSync('bash', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  const binDir = join(dir, 'git-timing-bin');
  const log = join(dir, 'git-calls.log');
  mkdirSync(binDir, { recursive: true });
  writeFileSync(log, '');
  writeFileSync(
    join(binDir, 'git'),
    [
      '#!/bin/bash',
      's=$EPOCHREALTIME',
      `${JSON.stringify(realGit)} "$@"`,
      'rc=$?',
      `printf '%s %s %s\\n' "$s" "$EPOCHREALTIME" "$1" >> ${JSON.stringify(log)}`,
      'exit $rc',
      '',
    ].join('\n'),
  );
  chmodSync(join(binDir, 'git'), 0o755);
  const previousPath = process.env.PATH;
  process.env.PATH = `${binDir}:${previousPath ?? '/usr/bin:/bin'}`;
  return {
    binDir,
    calls(since = 0) {
      return readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => {
          const [s, e, command] = l.split(' ');
          return { start: Number(s) * 1000, end: Number(e) * 1000, command: command ?? '' };
        })
        .filter((c) => c.end >= since);
    },
    uninstall() {
      process.env.PATH = previousPath;
    },
  };
}
