import { afterEach, beforeEach, vi } from 'vitest';
import { takeUnexpectedLogs } from '../helpers/logger.js';

// A test that logs an unexpected warning or error fails (zod's fail-on-console): noise hides bugs.
// Both ways count: console.warn/error, and a pino warning or error of a test logger
// (test/helpers/logger.ts) that the test did not declare with `expect`.
const calls: string[] = [];
beforeEach(() => {
  calls.length = 0;
  takeUnexpectedLogs();
  for (const level of ['warn', 'error'] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      calls.push(`console.${level}: ${args.map(String).join(' ')}`);
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
  const logs = takeUnexpectedLogs();
  if (calls.length === 0 && logs.length === 0) return;
  const shown = [...calls, ...logs.map((l) => `log ${l}`)];
  const more = shown.length > 20 ? `\n… and ${shown.length - 20} more` : '';
  throw new Error(`unexpected warnings or errors (declare expected ones with expectLogs):\n${shown.slice(0, 20).join('\n')}${more}`);
});
