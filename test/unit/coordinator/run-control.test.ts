import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../common/config-file.js';
import { runSchema } from '../../../coordinator/config.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { RunControlState, activeRunAtStart, assertCanStart } from '../../../coordinator/shell/run-control.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

const journal = (...bodies: object[]): JournalRecord[] => bodies.map((body, i) => ({ seq: i + 1, ts: 0, prev: '', hash: '', body: body as JournalRecord['body'] }));
const raw = (id: string) => ({ id, rounds: 2, minSites: 1, maxSiteWeight: 1 });
const embedded = runSchema.parse(raw('embedded'));

describe('which run a (re)started coordinator drives', () => {
  it('idles without a configured or admin-started run', () => {
    expect(activeRunAtStart([], undefined)).toBeUndefined();
  });

  it('drives the config run, unless an admin-started run is the latest the journal started', () => {
    expect(activeRunAtStart([], embedded)?.run.id).toBe('embedded');
    const records = journal({ type: 'run-started', runId: 'embedded' }, { type: 'run-requested', runId: 'b', run: raw('b'), admin: 'x' }, { type: 'run-started', runId: 'b' });
    expect(activeRunAtStart(records, embedded)).toMatchObject({ run: { id: 'b', rounds: 2 }, aborted: false });
    expect(activeRunAtStart(journal(...records.map((r) => r.body), { type: 'run-aborted', runId: 'b', admin: 'x' }), embedded)).toMatchObject({ run: { id: 'b' }, aborted: true });
  });

  it('refuses a journaled run file that no longer validates, naming the record', () => {
    const records = journal({ type: 'run-requested', runId: 'b', run: { ...raw('b'), extra: 1 }, admin: 'x' });
    expect(() => activeRunAtStart(records, undefined)).toThrow(ConfigError);
    expect(() => activeRunAtStart(records, undefined)).toThrow(/journal run-requested b/);
  });

  it('refuses a start while a run is active or with a run id already used', () => {
    expect(() => assertCanStart('training', [], 'x')).toThrow(CoordinatorError);
    expect(() => assertCanStart('finished', journal({ type: 'run-started', runId: 'x' }), 'x')).toThrow(/already used/);
    expect(() => assertCanStart('failed', [], 'x')).not.toThrow();
  });

  it('holds a round-opening event while paused and hands it back on resume; the pause survives a restart', () => {
    const c = new RunControlState();
    c.restore(journal({ type: 'run-paused', runId: 'r', admin: 'a' }), 'r');
    expect(c.paused).toBe(true);
    const event = { type: 'committed' as const, round: 1, attempt: 0 };
    expect(c.hold(event)).toBe(true);
    expect(c.setPaused(false)).toBe(event);
    expect(c.hold(event)).toBe(false);
    c.restore(journal({ type: 'run-paused', runId: 'r', admin: 'a' }, { type: 'run-resumed', runId: 'r', admin: 'a' }), 'r');
    expect(c.paused).toBe(false);
  });
});
