/**
 * Waits until `cond` holds, checking every `intervalMs`; fails with `what` after
 * `timeoutMs`. The timeout is a generous upper bound, never the thing tested.
 */
export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
