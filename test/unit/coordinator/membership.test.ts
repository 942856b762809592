import { describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import type { Refusal } from '../../../coordinator/observe/refusals.js';
import type { PeerIdentity } from '../../../coordinator/pki/index.js';
import { Membership, membersOf, membershipRecordsAtStart } from '../../../coordinator/sites/membership.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

const journal = (...bodies: object[]): JournalRecord[] => bodies.map((body, i) => ({ seq: i + 1, ts: 0, prev: '', hash: '', body: body as JournalRecord['body'] }));
const approved = (site: string, renewal = false) => ({ type: 'site-approved', site, fingerprint: `F-${site}`, keySha256: `K-${site}`, notAfterMs: 0, renewal, admin: 'alice' });
const runStarted = (runId: string, expectedSites: string[]) => ({ type: 'run-started', runId, plan: { runId, expectedSites } });
const site = (id: string): PeerIdentity => ({ role: 'site', id, federation: 'f', fingerprint256: `FP-${id}` });

describe('membership at start-up', () => {
  it('seeds a new state dir from members and the expected sites of the run, sorted and with their sources', () => {
    const records = membershipRecordsAtStart([], { members: ['hlrs', 'bsc'], run: { expectedSites: ['bsc', 'cineca'] } });
    expect(records).toEqual([
      { type: 'membership-seeded', sites: ['bsc', 'cineca', 'hlrs'], fromMembers: ['bsc', 'hlrs'], fromExpectedSites: ['bsc', 'cineca'], fromApprovals: [] },
    ]);
  });

  it('seeds an old state dir from the expected sites of its runs and its approvals, never from sites that merely joined', () => {
    const old = journal(
      runStarted('run-1', ['site-1', 'site-2']),
      { type: 'site-joined', site: 'site-99', fingerprint: 'F99', agentVersion: 'x' },
      approved('site-7'),
      { type: 'site-revoked', site: 'site-7', fingerprints: ['F-site-7'], keySha256s: ['K-site-7'], reason: '', admin: 'alice' },
    );
    const [seed] = membershipRecordsAtStart(old, { members: [] });
    expect(seed).toEqual({ type: 'membership-seeded', sites: ['site-1', 'site-2', 'site-7'], fromMembers: [], fromExpectedSites: ['site-1', 'site-2'], fromApprovals: ['site-7'] });
    // A revoked member stays a member; the revocation refuses it (coordinator/sites/revocation.ts).
    expect([...membersOf(journal(...old.map((r) => r.body), seed!)).members].sort()).toEqual(['site-1', 'site-2', 'site-7']);
  });

  it('adds only names new to members once seeded, and ignores names removed from the config', () => {
    const seeded = journal({ type: 'membership-seeded', sites: ['bsc', 'hlrs'], fromMembers: ['bsc', 'hlrs'], fromExpectedSites: [], fromApprovals: [] });
    expect(membershipRecordsAtStart(seeded, { members: ['bsc', 'hlrs'] })).toEqual([]);
    expect(membershipRecordsAtStart(seeded, { members: ['bsc'], run: { expectedSites: ['new-site'] } })).toEqual([]);
    expect(membershipRecordsAtStart(seeded, { members: ['hlrs', 'cineca', 'bsc', 'cineca'] })).toEqual([{ type: 'member-added', site: 'cineca', source: 'config' }]);
    expect([...membersOf(seeded).members]).toEqual(['bsc', 'hlrs']);
  });

  it('admits approved sites, and keeps a renewed site a member', () => {
    const records = journal(
      { type: 'membership-seeded', sites: ['bsc'], fromMembers: ['bsc'], fromExpectedSites: [], fromApprovals: [] },
      approved('hlrs'),
      approved('hlrs', true),
      approved('bsc', true),
      { type: 'member-added', site: 'cineca', source: 'config' },
    );
    expect(membersOf(records)).toEqual({ members: new Set(['bsc', 'hlrs', 'cineca']), seeded: true });
  });
});

describe('Membership.require', () => {
  it('lets members and other roles through, and refuses a non-member site with NOT_MEMBER, reporting it', () => {
    const refused: Refusal[] = [];
    const m = new Membership(['bsc'], { refused: (r) => refused.push(r) });
    m.require(site('bsc'), '10.0.0.1:4000');
    m.require({ ...site('alice'), role: 'admin' }, '10.0.0.2:4000');
    let err: unknown;
    try {
      m.require(site('site-99'), '10.0.0.9:5000');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('NOT_MEMBER');
    expect((err as CoordinatorError).retryable).toBe(false);
    expect((err as CoordinatorError).message).toMatch(/^site site-99 is not a member of this federation/);
    expect(refused).toEqual([{ reason: 'not_member', peer: '10.0.0.9:5000', cause: '', fingerprint: 'FP-site-99', site: 'site-99' }]);
    m.approved({ site: 'site-99' });
    m.require(site('site-99'), '10.0.0.9:5000');
    expect(m.list()).toEqual(['bsc', 'site-99']);
    expect(m.size).toBe(2);
  });
});
