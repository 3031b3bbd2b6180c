import { posix } from 'node:path';
import type { ConfigIssue } from './load.ts';

/**
 * A pipeline's build context (relative to the repository) and Dockerfile (relative to
 * the context) must name something inside them: `..` out of them, an absolute path or
 * a control character could make a build read or send what the repository does not
 * hold. Returns the normalised path (`./app/` → `app`), or the input with an issue.
 */
export function insidePath(value: string, path: string, within: 'the repository' | 'the build context', issues: ConfigIssue[]): string {
  // oxlint-disable-next-line no-control-regex -- control characters are what is refused
  if (/[\x00-\x1f\x7f]/.test(value)) {
    issues.push({ path, message: `${JSON.stringify(value)} contains a control character` });
    return value;
  }
  if (posix.isAbsolute(value) || /^[A-Za-z]:[\\/]/.test(value)) {
    issues.push({ path, message: `${JSON.stringify(value)} is an absolute path: give a path inside ${within}, relative to it` });
    return value;
  }
  const normal = posix.normalize(value).replace(/\/+$/, '') || '.';
  if (normal === '..' || normal.startsWith('../')) {
    issues.push({ path, message: `${JSON.stringify(value)} leaves ${within}: give a path inside it` });
    return value;
  }
  return normal;
}
