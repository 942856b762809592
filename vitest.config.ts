import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: integration tests start several processes each; run files one or two at a time.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // it.concurrent cases (crash points) start a coordinator and agents each: two at a time.
    maxConcurrency: 2,
    setupFiles: ['test/setup/fail-on-console.ts', 'test/setup/native.ts'],
  },
});
