/** When a site's join goes into the audit trail. */
import type { JournalRecord } from '../state/journal.js';
import type { SiteJoinedRecord } from '../state/records.js';

/**
 * The `site-joined` record to journal for a site connecting with `fingerprint` and `agentVersion`,
 * or undefined when its last journaled join says the same (a reconnection is only an event).
 */
export function siteJoinedRecord(records: readonly JournalRecord[], site: string, fingerprint: string, agentVersion: string): SiteJoinedRecord | undefined {
  for (let i = records.length - 1; i >= 0; i--) {
    const b = records[i]!.body;
    if (b.type !== 'site-joined' || b['site'] !== site) continue;
    if (b['fingerprint'] === fingerprint && b['agentVersion'] === agentVersion) return undefined;
    break;
  }
  return { type: 'site-joined', site, fingerprint, agentVersion };
}
