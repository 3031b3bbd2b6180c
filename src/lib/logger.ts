import { pino, type Logger } from 'pino';

/**
 * The process logger. Secrets are `Secret` objects and print as "[secret]" anyway;
 * the redaction list is a second line of defence for headers and stray fields.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { name: 'deployer' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-hub-signature-256"]',
          'req.headers["x-hub-signature"]',
          '*.password',
          '*.token',
          '*.webhookSecret',
          '*.adminToken',
          'authconfig',
        ],
        censor: '[redacted]',
      },
    },
    destination as never,
  );
}

export type { Logger };
