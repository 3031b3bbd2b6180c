// A timing proxy in front of the Docker socket: every API call (method, path, start,
// end of the response) is recorded, so a benchmark can tell the time spent inside
// Docker from the time spent around it. HTTP-level (one record per request, keep-alive
// and streamed bodies pass through); no upgrade/hijack support, which neither the
// deployer nor the CLI commands benchmarked need. Run as a child: see docker-proxy.ts.
import http from 'node:http';
import { rmSync } from 'node:fs';

const [listen, target] = process.argv.slice(2);
if (!listen || !target) throw new Error('usage: docker-proxy-child.ts LISTEN_SOCKET TARGET_SOCKET');

export interface DockerCall {
  method: string;
  path: string;
  status: number;
  start: number;
  end: number;
}

const calls: DockerCall[] = [];
const MAX_CALLS = 200_000;
const now = () => performance.timeOrigin + performance.now();
const agent = new http.Agent({ keepAlive: true, socketPath: target } as http.AgentOptions);

const server = http.createServer((req, res) => {
  const start = now();
  const path = (req.url ?? '/').split('?')[0]!;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = v;
  const up = http.request({ socketPath: target, method: req.method, path: req.url, headers, agent }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders);
    upRes.pipe(res);
    upRes.on('end', () => {
      if (calls.length < MAX_CALLS) calls.push({ method: req.method ?? '', path, status: upRes.statusCode ?? 0, start, end: now() });
    });
  });
  up.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ message: `docker proxy: ${err.message}` }));
  });
  req.pipe(up);
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
});
server.requestTimeout = 0;
server.headersTimeout = 0;
server.keepAliveTimeout = 60_000;

rmSync(listen, { force: true });
server.listen(listen, () => process.send?.({ type: 'ready' }));

process.on('message', (msg: { type: string; since?: number }) => {
  if (msg.type === 'calls') process.send?.({ type: 'calls', calls: calls.filter((c) => c.end >= (msg.since ?? 0)) });
  if (msg.type === 'stop') server.close(() => process.exit(0));
  if (msg.type === 'stop') setTimeout(() => process.exit(0), 1000).unref();
});
process.on('disconnect', () => process.exit(0));
