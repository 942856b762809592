/**
 * The test logger (test/helpers/logger.ts) is what makes a coordinator's warning fail a test: if it
 * let a warning through unseen, every test that relies on it would pass on a noisy failure.
 */
import { describe, expect, it } from 'vitest';
import { expectLogs, takeUnexpectedLogs, testLogger } from '../../helpers/logger.js';

describe('testLogger', () => {
  it('records an undeclared warning and error as unexpected, and an info line not', () => {
    const { logger, lines } = testLogger();
    logger.info('routine');
    logger.warn({ site: 'a' }, 'site dropped');
    logger.error('aggregation failed');
    const unexpected = takeUnexpectedLogs(); // taken here, so this test itself passes
    expect(unexpected).toHaveLength(2);
    expect(unexpected[0]).toMatch(/^warn: site dropped .*"site":"a"/);
    expect(unexpected[1]).toMatch(/^error: aggregation failed/);
    expect(lines.map((l) => l.msg)).toEqual(['routine', 'site dropped', 'aggregation failed']);
  });

  it('lets through what the logger or the test declared, and only that', () => {
    const { logger, warnings } = testLogger({ expect: [/^upload refused$/, (l) => l['code'] === 'ROUND_CLOSED'] });
    expectLogs(/^run failed$/);
    logger.warn('upload refused');
    logger.warn({ code: 'ROUND_CLOSED' }, 'late chunk');
    logger.error('run failed');
    logger.warn('upload refused twice');
    expect(warnings()).toHaveLength(4);
    expect(takeUnexpectedLogs()).toEqual([expect.stringMatching(/^warn: upload refused twice/)]);
  });

  it("forgets a test's declarations when the test ends", () => {
    expectLogs(/^anything$/);
    expect(takeUnexpectedLogs()).toEqual([]);
    testLogger().logger.warn('anything');
    expect(takeUnexpectedLogs()).toEqual([expect.stringMatching(/^warn: anything/)]);
  });
});
