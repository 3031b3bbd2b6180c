import { inspect } from 'node:util';

/**
 * A secret value that cannot leak by accident: every way of turning it into text
 * (template strings, JSON, util.inspect, pino) yields a placeholder. Only `reveal()`
 * gives the value, so each use of a secret is a visible, greppable call.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[secret]';
  }
  toJSON(): string {
    return '[secret]';
  }
  [inspect.custom](): string {
    return '[secret]';
  }
}
