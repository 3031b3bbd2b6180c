import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BodyBudget, checkDeliveryHeaders, isRefusal, readSignedBody, verifyEmpty, WEBHOOK_BODY_LIMIT } from '../../src/web/routes/webhook-intake.ts';

const SECRET = 'a-secret';
const sig = (body: Buffer) => createHmac('sha256', SECRET).update(body).digest();
const headers = (extra: Record<string, string | undefined> = {}) => ({
  'x-github-event': 'push',
  'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
  'x-hub-signature-256': `sha256=${'0a'.repeat(32)}`,
  'content-length': '10',
  ...extra,
});

describe('checkDeliveryHeaders', () => {
  it('accepts what GitHub sends', () => {
    const h = checkDeliveryHeaders(headers());
    expect(isRefusal(h)).toBe(false);
    expect(h).toMatchObject({ event: 'push', length: 10 });
    expect(checkDeliveryHeaders(headers({ 'content-length': undefined, 'x-github-event': 'pull_request_review' }))).toMatchObject({ length: undefined });
  });

  it('refuses missing and malformed headers, and lengths over the limit', () => {
    const cases: [Record<string, string | undefined>, number][] = [
      [{ 'x-github-event': undefined }, 400],
      [{ 'x-github-event': 'Push!' }, 400],
      [{ 'x-github-delivery': 'a/b' }, 400],
      [{ 'x-hub-signature-256': undefined }, 401],
      [{ 'x-hub-signature-256': 'sha256=00' }, 401],
      [{ 'x-hub-signature-256': `sha1=${'0a'.repeat(20)}` }, 401],
      [{ 'content-length': String(WEBHOOK_BODY_LIMIT + 1) }, 413],
    ];
    for (const [extra, status] of cases) expect(checkDeliveryHeaders(headers(extra)), JSON.stringify(extra)).toMatchObject({ status });
  });
});

describe('BodyBudget', () => {
  it('admits within bytes and count, and gives shares back once', () => {
    const b = new BodyBudget(100, 2);
    const one = b.admit(60)!;
    expect(b.admit(50)).toBeUndefined(); // 110 > 100
    const two = b.admit(40)!;
    expect(b.admit(0)).toBeUndefined(); // count
    one.release();
    one.release();
    expect(b.bytes).toBe(40);
    expect(b.bodies).toBe(1);
    const three = b.admit(0)!;
    expect(three.grow(60)).toBe(true);
    expect(three.grow(1)).toBe(false);
    three.release();
    two.release();
    expect([b.bytes, b.bodies]).toEqual([0, 0]);
  });
});

describe('readSignedBody', () => {
  const read = (chunks: Buffer[], signature: Buffer, length: number | undefined, budget = new BodyBudget()) =>
    readSignedBody(Readable.from(chunks), { secret: SECRET, signature, length, share: budget.admit(length ?? 0)! });

  it('verifies the HMAC over the raw bytes, across chunks, with or without a length', async () => {
    const body = Buffer.concat([Buffer.from('{"zen":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const chunks = [body.subarray(0, 3), body.subarray(3, 9), body.subarray(9)];
    for (const length of [body.length, undefined]) {
      const ok = await read(chunks, sig(body), length);
      expect(ok).toEqual({ raw: body, valid: true });
      const bad = await read(chunks, sig(Buffer.from(body.toString('utf8'))), length);
      expect(bad).toMatchObject({ valid: false });
    }
    expect(verifyEmpty(SECRET, sig(Buffer.alloc(0)))).toBe(true);
  });

  it('stops a chunked body past the limit (413) or past the budget (503), and gives the share back', async () => {
    const budget = new BodyBudget(1024, 4);
    const r = await read([Buffer.alloc(600), Buffer.alloc(600)], sig(Buffer.alloc(0)), undefined, budget);
    expect(r).toMatchObject({ status: 503, retryAfter: expect.any(Number) });
    expect(budget.bytes).toBe(0);
    const big = Array.from({ length: 26 }, () => Buffer.alloc(1024 * 1024));
    expect(await read(big, sig(Buffer.alloc(0)), undefined, new BodyBudget(64 * 1024 * 1024))).toMatchObject({ status: 413 });
  });
});
