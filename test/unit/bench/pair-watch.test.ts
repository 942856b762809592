/**
 * The arithmetic of the failover bench's load mode (bench/tools/pair-watch.ts): which time the
 * sites' uploads cover within a window, the gaps between a lease's renewals, and metric lines read
 * from a Prometheus exposition.
 */
import { describe, expect, it } from 'vitest';
import { metricValue, renewalGaps, uploadCover, type SiteUpload } from '../../../bench/tools/pair-watch.js';

const upload = (site: string, startMs: number, endMs: number, bytes: number): SiteUpload => ({ site, endMs, seconds: (endMs - startMs) / 1000, bytes });

describe('uploadCover', () => {
  it('counts overlapping uploads once, and the time all sites upload at once', () => {
    const cover = uploadCover([upload('a', 0, 4000, 400), upload('b', 2000, 6000, 400), upload('a', 8000, 9000, 100)], 2, 0, 10_000);
    expect(cover).toEqual({ anyS: 7, allS: 2, bytes: 900 });
  });

  it("counts an upload cut by the window's edge in proportion to the part inside", () => {
    const cover = uploadCover([upload('a', -2000, 2000, 400), upload('b', 9000, 11_000, 200)], 1, 0, 10_000);
    expect(cover.anyS).toBe(3);
    expect(cover.bytes).toBeCloseTo(300, 9);
  });

  it('counts nothing for uploads outside the window', () => {
    expect(uploadCover([upload('a', -5000, -1000, 400)], 1, 0, 10_000)).toEqual({ anyS: 0, allS: 0, bytes: 0 });
  });
});

describe('renewalGaps', () => {
  it('measures gaps only between renewals of one term, and every store latency', () => {
    const r = (term: number, sentMs: number, storedMs: number) => ({ holder: 'coord-a', term, sentMs, storedMs });
    expect(renewalGaps([r(2, 0, 5), r(2, 2000, 2010), r(7, 30_000, 30_001), r(7, 32_100, 32_103)])).toEqual({ gapsMs: [2000, 2100], storeMs: [5, 10, 1, 3] });
  });
});

describe('metricValue', () => {
  const text = [
    '# HELP fedhpc_bytes_total Model bytes moved',
    'fedhpc_bytes_total{direction="down",federation="bench"} 20',
    'fedhpc_bytes_total{direction="up",federation="bench"} 4000000000',
    'nodejs_eventloop_lag_max_seconds{federation="bench"} 0.4055',
    'nodejs_eventloop_lag_max_seconds_extra 9',
  ].join('\n');

  it('reads the line of a metric whose labels match', () => {
    expect(metricValue(text, 'fedhpc_bytes_total', 'direction="up"')).toBe(4_000_000_000);
    expect(metricValue(text, 'nodejs_eventloop_lag_max_seconds')).toBe(0.4055);
  });

  it('is undefined for a metric that is absent', () => {
    expect(metricValue(text, 'nodejs_eventloop_lag_p99_seconds')).toBeUndefined();
  });
});
