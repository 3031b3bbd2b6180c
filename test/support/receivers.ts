// Local HTTP servers standing in for a Slack incoming webhook and for an outbound
// webhook receiver. Each records what it got; the Slack one checks the message
// against Slack's documented Block Kit rules (block types and their required fields,
// size limits) and records a violation otherwise.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

export interface Received {
  at: number;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: any;
  status: number;
}

export type Behaviour = 'ok' | 'hang' | number;

export interface Receiver {
  /** Base URL; Slack-style hooks post to `${url}/services/…`. */
  url: string;
  received: Received[];
  violations: string[];
  /** How the next requests are answered: 200/204, never (hang), or a status code. */
  behave(b: Behaviour): void;
  close(): Promise<void>;
}

export async function startReceiver(opts: { kind: 'slack' | 'webhook' }): Promise<Receiver> {
  const received: Received[] = [];
  const violations: string[] = [];
  let behaviour: Behaviour = 'ok';
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: any;
      try {
        json = JSON.parse(body);
      } catch {
        violations.push(`${req.url}: body is not JSON`);
      }
      if (req.method !== 'POST') violations.push(`${req.url}: method ${req.method}`);
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) violations.push(`${req.url}: content-type ${req.headers['content-type']}`);
      if (opts.kind === 'slack' && json) violations.push(...checkBlockKit(json).map((v) => `${req.url}: ${v}`));
      const r: Received = { at: Date.now(), path: req.url ?? '', headers: req.headers, body, json, status: 0 };
      received.push(r);
      if (behaviour === 'hang') return; // never answers; the sender must time out
      const status = behaviour === 'ok' ? (opts.kind === 'slack' ? 200 : 204) : behaviour;
      r.status = status;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status === 200 && opts.kind === 'slack' ? 'ok' : status >= 400 ? (opts.kind === 'slack' ? 'no_service' : 'nope') : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`,
    received,
    violations,
    behave(b) {
      behaviour = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const TEXT_TYPES = new Set(['plain_text', 'mrkdwn']);

/** Slack's Block Kit rules for the blocks the deployer may send (api.slack.com/reference/block-kit). */
export function checkBlockKit(msg: any): string[] {
  const v: string[] = [];
  if (typeof msg.text !== 'string' || msg.text.length === 0) v.push('a top-level "text" fallback is required with blocks');
  if (!Array.isArray(msg.blocks)) return [...v, 'blocks must be an array'];
  if (msg.blocks.length > 50) v.push('at most 50 blocks');
  const text = (t: any, where: string, max: number, plainOnly = false) => {
    if (!t || !TEXT_TYPES.has(t.type) || typeof t.text !== 'string') return v.push(`${where}: a text object {type: plain_text|mrkdwn, text} is required`);
    if (plainOnly && t.type !== 'plain_text') v.push(`${where}: must be plain_text`);
    if (t.text.length === 0 || t.text.length > max) v.push(`${where}: text must be 1..${max} characters`);
    return 0;
  };
  msg.blocks.forEach((b: any, i: number) => {
    const at = `blocks[${i}] (${b?.type})`;
    if (b.block_id !== undefined && (typeof b.block_id !== 'string' || b.block_id.length > 255)) v.push(`${at}: block_id`);
    switch (b?.type) {
      case 'header':
        text(b.text, `${at}.text`, 150, true);
        break;
      case 'section':
        if (!b.text && !b.fields) v.push(`${at}: text or fields is required`);
        if (b.text) text(b.text, `${at}.text`, 3000);
        if (b.fields) {
          if (!Array.isArray(b.fields) || b.fields.length > 10) v.push(`${at}: fields must be an array of at most 10`);
          else b.fields.forEach((f: any, j: number) => text(f, `${at}.fields[${j}]`, 2000));
        }
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 10) v.push(`${at}: 1..10 elements`);
        break;
      case 'divider':
        break;
      case 'actions':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 25) v.push(`${at}: 1..25 elements`);
        else
          b.elements.forEach((e: any, j: number) => {
            if (e.type !== 'button') return v.push(`${at}.elements[${j}]: only buttons are expected`);
            text(e.text, `${at}.elements[${j}].text`, 75, true);
            if (e.url !== undefined && (typeof e.url !== 'string' || e.url.length > 3000 || !/^https?:\/\//.test(e.url))) v.push(`${at}.elements[${j}].url must be an http(s) URL up to 3000 characters`);
            if (e.action_id !== undefined && (typeof e.action_id !== 'string' || e.action_id.length > 255)) v.push(`${at}.elements[${j}].action_id`);
            return 0;
          });
        break;
      default:
        v.push(`${at}: unknown block type`);
    }
  });
  return v;
}
