import type { Redis } from 'ioredis';
import type { StopKind } from '../pipeline/cancel.ts';

export interface StopMessage {
  runId: string;
  kind: StopKind;
  message: string;
  supersededBy?: string;
}

const STOP_TTL_S = 3600;

/**
 * Stop requests from the HTTP side to whichever worker (on whatever host) runs a run.
 * Published on `<prefix>:control` for workers running it now, and kept for an hour
 * under `<prefix>:stop:<runId>` for a worker that picks the run up a moment later.
 */
export class ControlPublisher {
  readonly #redis: Redis;
  readonly #prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async requestStop(msg: StopMessage): Promise<void> {
    const json = JSON.stringify(msg);
    await this.#redis.multi().set(`${this.#prefix}:stop:${msg.runId}`, json, 'EX', STOP_TTL_S).publish(`${this.#prefix}:control`, json).exec();
  }
}

export class ControlSubscriber {
  readonly #sub: Redis;
  readonly #reader: Redis;
  readonly #prefix: string;

  /** `sub` is put in subscriber mode; `reader` is a normal connection. */
  constructor(sub: Redis, reader: Redis, prefix: string, onStop: (msg: StopMessage) => void) {
    this.#sub = sub;
    this.#reader = reader;
    this.#prefix = prefix;
    const channel = `${prefix}:control`;
    void sub.subscribe(channel).catch(() => undefined); // ioredis re-subscribes after reconnects
    sub.on('message', (ch: string, text: string) => {
      if (ch !== channel) return;
      try {
        onStop(JSON.parse(text) as StopMessage);
      } catch {
        /* not ours */
      }
    });
  }

  /** A stop requested before this worker took the run. */
  async pending(runId: string): Promise<StopMessage | undefined> {
    const json = await this.#reader.get(`${this.#prefix}:stop:${runId}`);
    return json ? (JSON.parse(json) as StopMessage) : undefined;
  }

  close(): void {
    this.#sub.disconnect();
  }
}
