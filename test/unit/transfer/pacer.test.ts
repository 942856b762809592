/** The site's upload rate limit is one budget shared by all its parallel streams. */
import { describe, expect, it } from 'vitest';
import { ratePacer } from '../../../site-agent/transfer.js';

describe('ratePacer', () => {
  it('keeps three concurrent streams together within the one rate', async () => {
    const rate = 200_000;
    const pace = ratePacer(rate, new AbortController().signal);
    const t0 = Date.now();
    // 3 streams × 5 chunks × 20 kB = 300 kB: at least 1.4 s at 200 kB/s (the first chunk is free).
    await Promise.all([0, 1, 2].map(async () => {
      for (let i = 0; i < 5; i++) await pace(20_000);
    }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(((300_000 - 20_000) / rate) * 1000 - 20);
  });

  it('does not wait without a limit', async () => {
    const pace = ratePacer(0, new AbortController().signal);
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) await pace(1 << 20);
    expect(Date.now() - t0).toBeLessThan(200);
  });
});
