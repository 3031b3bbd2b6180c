// Realistic webhook bodies: GitHub's own push example, grown to a typical size with
// more commits (a push of a few commits with their file lists is ~10 KB).
import { createHash } from 'node:crypto';
import { pushPayload, sign } from '../../test/helpers/github.ts';

export function pushBody(repo: string, branch: string, sha: string, targetBytes = 10 * 1024): string {
  const p = pushPayload(repo, branch, sha, 'Update the site');
  const base = p.head_commit as Record<string, unknown>;
  const commits: Record<string, unknown>[] = [];
  for (let i = 0; JSON.stringify({ ...p, commits }).length < targetBytes && i < 1000; i++) {
    const id = createHash('sha1').update(`${sha}-${i}`).digest('hex');
    commits.push({
      ...base,
      id,
      tree_id: createHash('sha1').update(`tree-${i}`).digest('hex'),
      message: `Commit ${i} of the push: update pages and assets`,
      url: `https://github.com/${repo}/commit/${id}`,
      added: [`content/posts/post-${i}.md`],
      removed: [],
      modified: ['content/index.md', `assets/img/figure-${i}.png`, 'src/layouts/base.html'],
    });
  }
  // The last commit is the head, as GitHub sends it.
  if (commits.length) commits[commits.length - 1] = { ...commits[commits.length - 1], id: sha };
  return JSON.stringify({ ...p, commits, head_commit: { ...base, id: sha } });
}

/** Headers of a signed delivery (the delivery id is set per request). */
export function signedHeaders(body: string, secret: string, event = 'push'): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/bench',
    'x-github-event': event,
    'x-hub-signature-256': sign(body, secret),
  };
}
