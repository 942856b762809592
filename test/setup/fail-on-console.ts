import { afterEach, beforeEach, vi } from 'vitest';

// A test that logs an unexpected warning or error fails (zod's fail-on-console): noise hides bugs.
const calls: string[] = [];
beforeEach(() => {
  calls.length = 0;
  for (const level of ['warn', 'error'] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      calls.push(`console.${level}: ${args.map(String).join(' ')}`);
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
  if (calls.length > 0) throw new Error(`unexpected console output:\n${calls.join('\n')}`);
});
