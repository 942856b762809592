/**
 * pino JSON logs on stderr (stdout is kept for command output). Child loggers carry `site`,
 * `round` and `phase` where they apply.
 */
import { pino, destination } from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  readonly name: string;
  readonly level?: string;
  readonly base?: Record<string, unknown>;
  /** File descriptor to write to; 2 (stderr) by default. */
  readonly fd?: number;
}

/** Creates a process logger. Synchronous writes: a crash must not swallow its last lines. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    { name: options.name, level: options.level ?? 'info', base: { pid: process.pid, ...options.base } },
    destination({ fd: options.fd ?? 2, sync: true }),
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
