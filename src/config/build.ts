import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Secret } from '../lib/secret.ts';
import { insidePath } from './paths.ts';
import type { BuildSettings } from './types.ts';

interface Issue {
  path: string;
  message: string;
}

/** BuildKit refuses secrets larger than this (its MaxSecretSize). */
export const MAX_SECRET_BYTES = 500 * 1024;
/** Set by the deployer on every build: the commit being built. */
export const RESERVED_ARGS = ['SOURCE_COMMIT'] as const;

const SECRET_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/;

/**
 * Resolves a pipeline's `build:` block: defaults, the builder, the platform, the images
 * to take cache from, and build secrets. `{ file }` secrets are read and `{ env }` ones
 * looked up now, once, so a missing secret is a config error naming its key rather than
 * a failed build later.
 */
export function resolveBuild(
  b: Record<string, any> | undefined,
  ctx: { path: string; base: string; env: Record<string, string | undefined>; image: string; tag: string },
  issues: Issue[],
): BuildSettings {
  const path = `${ctx.path}.build`;
  const build = b ?? {};
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries((build.args ?? {}) as Record<string, unknown>)) {
    if ((RESERVED_ARGS as readonly string[]).includes(k)) issues.push({ path: `${path}.args.${k}`, message: `${k} is set by the deployer (the full commit sha being built)` });
    args[k] = String(v);
  }
  const builder: 'buildkit' | 'classic' = build.builder ?? 'buildkit';
  const platform: string | undefined = build.platform;
  if (platform !== undefined && !PLATFORM.test(platform)) issues.push({ path: `${path}.platform`, message: `"${platform}" is not a platform like linux/amd64 or linux/arm64/v8` });

  const secrets: Record<string, Secret> = {};
  for (const [id, spec] of Object.entries((build.secrets ?? {}) as Record<string, { file?: string; env?: string }>)) {
    const at = `${path}.secrets.${id}`;
    if (!SECRET_ID.test(id)) {
      issues.push({ path: at, message: 'a secret id is letters, digits, "_", "." and "-" (what RUN --mount=type=secret,id=… names)' });
      continue;
    }
    if ((spec.file === undefined) === (spec.env === undefined)) {
      issues.push({ path: at, message: 'give exactly one of { file: PATH } or { env: NAME }' });
      continue;
    }
    const value = spec.file !== undefined ? readSecretFile(resolve(ctx.base, spec.file), `${at}.file`, spec.file, issues) : readSecretEnv(spec.env!, `${at}.env`, ctx.env, issues);
    if (value !== undefined) secrets[id] = value;
  }
  if (builder === 'classic' && Object.keys(build.secrets ?? {}).length > 0) {
    issues.push({ path: `${path}.secrets`, message: 'build secrets need builder: buildkit (the classic builder has no secret mounts)' });
  }

  const cacheFrom: string[] = build.cacheFrom ?? [`${ctx.image}:${ctx.tag}`];
  cacheFrom.forEach((ref, i) => {
    if (/\s/.test(ref) || ref.includes('://')) issues.push({ path: `${path}.cacheFrom[${i}]`, message: `"${ref}" is not an image reference` });
  });

  return {
    context: insidePath(build.context ?? '.', `${path}.context`, 'the repository', issues),
    dockerfile: insidePath(build.dockerfile ?? 'Dockerfile', `${path}.dockerfile`, 'the build context', issues),
    args,
    target: build.target,
    builder,
    platform,
    secrets,
    cacheFrom,
  };
}

function readSecretFile(file: string, path: string, shown: string, issues: Issue[]): Secret | undefined {
  try {
    const st = statSync(file);
    if (!st.isFile()) {
      issues.push({ path, message: `"${shown}" is not a regular file` });
      return undefined;
    }
    if (st.size > MAX_SECRET_BYTES) {
      issues.push({ path, message: `"${shown}" is larger than BuildKit's secret limit (500 KiB)` });
      return undefined;
    }
    // Kept byte for byte (no newline trimmed): a key file is passed exactly as written.
    return new Secret(readFileSync(file, 'utf8'));
  } catch (err) {
    issues.push({ path, message: `cannot read "${shown}": ${(err as NodeJS.ErrnoException).code ?? err}` });
    return undefined;
  }
}

function readSecretEnv(name: string, path: string, env: Record<string, string | undefined>, issues: Issue[]): Secret | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    issues.push({ path, message: `"${name}" is not an environment variable name` });
    return undefined;
  }
  const value = env[name];
  if (value === undefined || value === '') {
    issues.push({ path, message: `environment variable ${name} is not set` });
    return undefined;
  }
  if (Buffer.byteLength(value) > MAX_SECRET_BYTES) {
    issues.push({ path, message: `environment variable ${name} is larger than BuildKit's secret limit (500 KiB)` });
    return undefined;
  }
  return new Secret(value);
}
