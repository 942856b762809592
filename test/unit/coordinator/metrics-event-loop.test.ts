/**
 * The coordinator's event-loop lag metrics sample every EVENT_LOOP_SAMPLE_MS (100 ms, not
 * prom-client's 10 ms, which cost an idle process 0.76 % of a core): a loop blocked for longer than
 * that is still reported, at its length, in `nodejs_eventloop_lag_max_seconds`.
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../../coordinator/observe/events.js';
import { CoordinatorMetrics, EVENT_LOOP_SAMPLE_MS } from '../../../coordinator/observe/metrics.js';
import { RoundTimeline } from '../../../coordinator/shell/timeline.js';
import { SiteRegistry } from '../../../coordinator/sites/registry.js';

function metricValue(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('the coordinator’s event-loop lag metrics', () => {
  it('sample coarsely, yet report a blocked loop at its length', async () => {
    expect(EVENT_LOOP_SAMPLE_MS).toBeGreaterThanOrEqual(50);
    const bus = new EventBus(() => 0);
    const metrics = new CoordinatorMetrics({ bus, sites: new SiteRegistry(() => 0), timeline: new RoundTimeline(bus), now: () => 0, federation: 'test-fed' });
    // Let the histogram take a few samples, then block the loop for 3 sampling periods.
    await new Promise((resolve) => setTimeout(resolve, 2.5 * EVENT_LOOP_SAMPLE_MS));
    const blockMs = 3 * EVENT_LOOP_SAMPLE_MS;
    const until = Date.now() + blockMs;
    while (Date.now() < until) {
      // busy: the loop is blocked
    }
    await new Promise((resolve) => setTimeout(resolve, 2.5 * EVENT_LOOP_SAMPLE_MS));
    const max = metricValue(await metrics.text(), 'nodejs_eventloop_lag_max_seconds');
    // The blocked stretch, less at most one sampling period (a sample may fall just before it).
    expect(max ?? Number.NaN).toBeGreaterThanOrEqual((blockMs - EVENT_LOOP_SAMPLE_MS) / 1000);
  });
});
