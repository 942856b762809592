/**
 * The logger tests hand to code running in the test process. It keeps every line, and a line at
 * `warn` or above that the test did not declare fails the test in `afterEach` (test/setup), as an
 * unexpected `console.warn` does: a warning nobody looks at hides a bug (zod's fail-on-console).
 */
import { pino, type LevelWithSilent, type Logger } from 'pino';

/** One pino JSON line, parsed. */
export interface LogLine {
  readonly level: number;
  readonly msg?: string;
  readonly [key: string]: unknown;
}

/** pino's number for `warn`: lines at this level or above are checked. */
export const WARN_LEVEL = 40;

/** What a test says it expects to be warned about: a message pattern or a predicate on the line. */
export type ExpectedLog = RegExp | ((line: LogLine) => boolean);

export interface TestLoggerOptions {
  /** Warnings and errors this test provokes on purpose; any other fails it. */
  readonly expect?: readonly ExpectedLog[];
  /** The lowest level kept in `lines` (debug by default); warnings are checked whatever it is. */
  readonly level?: LevelWithSilent;
}

/** A logger, the lines it wrote, and those at `warn` or above. */
export interface TestLogger {
  readonly logger: Logger;
  readonly lines: LogLine[];
  warnings(): LogLine[];
}

const LABELS: Readonly<Record<number, string>> = { 40: 'warn', 50: 'error', 60: 'fatal' };

/** Unexpected lines of the loggers made since the current test started; test/setup reads and clears it. */
const unexpected: string[] = [];
/** What the running test declared with `expectLogs`; cleared between tests. */
const expectedNow: ExpectedLog[] = [];

/**
 * Declares, inside a test, warnings or errors that it provokes on purpose from any test logger
 * (for example a coordinator started once for the whole file). Forgotten when the test ends.
 */
export function expectLogs(...expected: ExpectedLog[]): void {
  expectedNow.push(...expected);
}

function matches(line: LogLine, e: ExpectedLog): boolean {
  return typeof e === 'function' ? e(line) : e.test(line.msg ?? '');
}

/** A logger whose unexpected warnings and errors fail the running test. */
export function testLogger(o: TestLoggerOptions = {}): TestLogger {
  const lines: LogLine[] = [];
  const expected = o.expect ?? [];
  const logger = pino(
    { level: o.level ?? 'debug' },
    {
      write(s: string): void {
        const line = JSON.parse(s) as LogLine;
        lines.push(line);
        if (line.level >= WARN_LEVEL && !expected.some((e) => matches(line, e)) && !expectedNow.some((e) => matches(line, e))) {
          unexpected.push(`${LABELS[line.level] ?? line.level}: ${line.msg ?? ''} ${JSON.stringify(line)}`);
        }
      },
    },
  );
  return { logger, lines, warnings: () => lines.filter((l) => l.level >= WARN_LEVEL) };
}

/**
 * Takes the unexpected lines logged so far and forgets them and the test's `expectLogs`: for the
 * setup file, between tests.
 */
export function takeUnexpectedLogs(): string[] {
  expectedNow.length = 0;
  return unexpected.splice(0, unexpected.length);
}
