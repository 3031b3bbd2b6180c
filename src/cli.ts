import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.ts';
import type { Config } from './config/types.ts';
import { formatDuration } from './lib/duration.ts';
import { redactUrl } from './git/source.ts';
import { createLogger } from './lib/logger.ts';
import { CLIENT_COMMANDS, CLIENT_USAGE, runClient, type ClientCommand } from './client/commands.ts';
import { describeReporting } from './report/describe.ts';

const usage = `usage: deployer <command> [options]

commands:
  serve --config FILE [--no-worker]   HTTP API, UI and webhooks (+ a worker unless --no-worker)
  worker --config FILE                run builds and deploys only (no HTTP, no store)
  check-config --config FILE          validate the config and print its pipelines

${CLIENT_USAGE}`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    // Asked for: stdout, exit 0. No command at all is a usage error: stderr, exit 2.
    (command ? process.stdout : process.stderr).write(usage);
    return command ? 0 : 2;
  }
  if ((CLIENT_COMMANDS as readonly string[]).includes(command)) {
    return runClient(command as ClientCommand, rest, { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t), env: process.env });
  }
  let values: { config?: string; 'no-worker'?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { config: { type: 'string', short: 'c' }, 'no-worker': { type: 'boolean' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`deployer: ${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  if (!['serve', 'worker', 'check-config'].includes(command)) {
    process.stderr.write(`deployer: unknown command "${command}"\n\n${usage}`);
    return 2;
  }
  if (!values.config) {
    process.stderr.write(`deployer ${command}: --config FILE is required\n\n${usage}`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig(values.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (command === 'check-config') {
    process.stdout.write(describe(config));
    const { targetWarnings } = await import('./docker/target-check.ts');
    const warnings = await targetWarnings(config);
    process.stdout.write(warnings.length ? `${warnings.join('\n')}\n` : '');
    return 0;
  }
  const logger = createLogger(config.logLevel);
  // A daemon outlives a bug in one of its loops: say it loudly, keep serving.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  // Loaded here, not at the top: the client commands start fast without the daemon's modules.
  const { startDaemon } = await import('./daemon.ts');
  const daemon = await startDaemon(config, { http: command === 'serve', worker: command === 'worker' || !values['no-worker'], logger });
  if (daemon.url) logger.info({ url: daemon.url, pipelines: config.pipelines.map((p) => p.name) }, 'listening');
  else logger.info({ pipelines: config.pipelines.map((p) => p.name) }, 'worker started');
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await daemon.close();
  return 0;
}

function describe(config: Config): string {
  const lines = [`config ${config.file} is valid`, `listen ${config.listen.host}:${config.listen.port}, data ${config.dataDir}, redis prefix ${config.redisPrefix}`, `${config.pipelines.length} pipeline(s):`];
  for (const p of config.pipelines) {
    lines.push(`  ${p.name}: ${p.repo}@${p.branch} (${redactUrl(p.url)})`);
    lines.push(`    build ${p.build.context}/${p.build.dockerfile}${p.build.target ? ` target ${p.build.target}` : ''} -> ${p.image}:${p.tag} and :<commit>`);
    lines.push(`    deploy to ${p.services.length ? p.services.join(', ') : '(no services)'}: ${p.deploy.order}, on failure ${p.deploy.failureAction}, monitor ${formatDuration(p.deploy.monitorMs)}, timeout ${formatDuration(p.deploy.timeoutMs)}`);
  }
  lines.push('reporting:', ...describeReporting(config));
  return `${lines.join('\n')}\n`;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Done: what still holds the event loop 2 s later (a self-deploy's watch handed to
      // the successor, a socket a library forgot) must not keep a stopped deployer alive
      // until swarm kills it.
      setTimeout(() => process.exit(code), 2000).unref();
    },
    (err) => {
      process.stderr.write(`deployer: ${(err as Error).stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
