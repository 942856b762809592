/**
 * Who belongs to the federation. A certificate signed by the federation CA proves an identity, not
 * membership: a site takes part only if it is a member — listed in `members` in the coordinator
 * config, or approved by an admin (`admin approve`; a `site-approved` record admits its site) — and
 * not revoked (coordinator/sites/revocation.ts, checked separately). Every other site certificate
 * is refused at `Join` and on every later site call with NOT_MEMBER, so it never joins, never holds
 * a task stream and is never invited to a round.
 *
 * Membership lives in the journal, so it is audited and survives restarts:
 * - `membership-seeded` — written once per state dir, at its first start under this code: the
 *   config's `members`, every `expectedSites` the config and the journal's runs name, and every
 *   site approved in the journal so far (an old state dir keeps the federation it had);
 * - `member-added` — a site newly listed in the config's `members` at a later start;
 * - `site-approved` — an admin's approval (enrolment or renewal) admits its site; a renewal keeps it.
 * Nothing removes a member: revocation is how a site is shut out. Removing a name from `members`
 * in the config changes nothing already journaled.
 */
import { invariant } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';
import type { Logger } from '../../common/logger.js';
import type { RefusalSink } from '../observe/refusals.js';
import type { PeerIdentity } from '../pki/index.js';
import type { JournalRecord } from '../state/journal.js';
import type { StateStore } from '../state/store.js';

/** The first membership record of a state dir: who was a member when membership began. */
export interface MembershipSeededRecord {
  readonly type: 'membership-seeded';
  /** Every member, sorted. */
  readonly sites: readonly string[];
  /** Where they came from (a site may appear in several lists). */
  readonly fromMembers: readonly string[];
  readonly fromExpectedSites: readonly string[];
  readonly fromApprovals: readonly string[];
}

/** A site added to `members` in the coordinator config after the seed. */
export interface MemberAddedRecord {
  readonly type: 'member-added';
  readonly site: string;
  readonly source: 'config';
}

export type MembershipRecord = MembershipSeededRecord | MemberAddedRecord;

/** What membership the config asks for: its `members` and the expected sites of its run. */
export interface MembershipConfig {
  readonly members: readonly string[];
  readonly run?: { readonly expectedSites: readonly string[] } | undefined;
}

/** The members a journal records, and whether its membership was ever seeded. */
export function membersOf(records: readonly JournalRecord[]): { members: Set<string>; seeded: boolean } {
  const members = new Set<string>();
  let seeded = false;
  for (const { body } of records) {
    if (body.type === 'membership-seeded') {
      seeded = true;
      const sites = body['sites'];
      invariant(Array.isArray(sites) && sites.every((s) => typeof s === 'string'), 'a membership-seeded record lists its sites by id');
      for (const s of sites) members.add(s);
    } else if (body.type === 'member-added' || body.type === 'site-approved') {
      members.add(String(body['site']));
    }
  }
  return { members, seeded };
}

/**
 * The records to journal at start-up so that the journal's membership includes what the config
 * asks for: the seed, when the journal has none, else a `member-added` per new `members` entry.
 */
export function membershipRecordsAtStart(records: readonly JournalRecord[], config: MembershipConfig): MembershipRecord[] {
  const { members, seeded } = membersOf(records);
  if (seeded) {
    return [...new Set(config.members)].filter((s) => !members.has(s)).sort().map((site) => ({ type: 'member-added', site, source: 'config' }));
  }
  const expected = new Set(config.run?.expectedSites ?? []);
  const approvals = new Set<string>();
  for (const { body } of records) {
    if (body.type === 'run-started') for (const s of (body['plan'] as { expectedSites?: readonly string[] } | undefined)?.expectedSites ?? []) expected.add(s);
    if (body.type === 'site-approved') approvals.add(String(body['site']));
  }
  const sorted = (s: Iterable<string>): string[] => [...new Set(s)].sort();
  return [
    {
      type: 'membership-seeded',
      sites: sorted([...config.members, ...expected, ...approvals]),
      fromMembers: sorted(config.members),
      fromExpectedSites: sorted(expected),
      fromApprovals: sorted(approvals),
    },
  ];
}

/** The federation's members, as the site calls check them. */
export class Membership {
  private readonly members: Set<string>;

  constructor(
    members: Iterable<string>,
    private readonly refusals: RefusalSink,
  ) {
    this.members = new Set(members);
  }

  has(site: string): boolean {
    return this.members.has(site);
  }

  /** Number of members. */
  get size(): number {
    return this.members.size;
  }

  /** Members, sorted. */
  list(): string[] {
    return [...this.members].sort();
  }

  /** Admits the site of a `site-approved` record, once it is journaled. */
  approved(record: { readonly site: string }): void {
    this.members.add(record.site);
  }

  /**
   * Refuses a site certificate whose site is not a member: reports the refusal and throws
   * NOT_MEMBER (PERMISSION_DENIED on the wire, final). Other roles are not members of anything.
   */
  require(identity: PeerIdentity, peer: string): void {
    if (identity.role !== 'site' || this.members.has(identity.id)) return;
    this.refusals.refused({ reason: 'not_member', peer, cause: '', fingerprint: identity.fingerprint256, site: identity.id });
    throw new CoordinatorError(
      'NOT_MEMBER',
      `site ${identity.id} is not a member of this federation: it is not listed in the coordinator's members and no admin approved it (fedhpc admin approve)`,
      { site: identity.id },
    );
  }
}

/**
 * Restores membership at start-up: journals what the config adds (the seed of a state dir without
 * membership records, or new `members` entries), then reads every member from the journal.
 */
export async function restoreMembership(store: StateStore, config: MembershipConfig, refusals: RefusalSink, logger: Logger): Promise<Membership> {
  for (const record of membershipRecordsAtStart(store.records(), config)) {
    await store.append(record);
    if (record.type === 'membership-seeded') {
      logger.info({ members: record.sites, fromMembers: record.fromMembers, fromExpectedSites: record.fromExpectedSites, fromApprovals: record.fromApprovals }, 'membership seeded');
    } else {
      logger.info({ site: record.site }, 'member added from the config');
    }
  }
  return new Membership(membersOf(store.records()).members, refusals);
}
