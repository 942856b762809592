/**
 * Guarantee 4 in a real secure federation: the coordinator process (log level trace) and three
 * real site agents (trace) with one raw secure site whose randomness is recorded, so every secret
 * it holds is known. While the coordinator waits for the raw site's consistency signature (all
 * uploads verified, nothing unmasked yet), the masked words in the coordinator's spool pass χ²
 * uniformity tests; after the commit, none of the raw site's secrets — private keys, self-mask
 * seed, pairwise seeds, Shamir coefficients, shares held or revealed — appears in any log, event or
 * the journal, in hex, base64, base64url or as a JSON-serialised Buffer.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AdminEvent } from '../../coordinator/index.js';
import { chiSquared, chiSquaredCritical } from '../unit/secagg/helpers.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';
import { coordinatorStateDir, journalPath, whileAlive } from '../helpers/faults.js';
import { secureRun, siteDelta } from '../helpers/secure-federation.js';
import { waitUntil } from '../helpers/wait.js';
import { SecureRawSite, participate } from '../helpers/secure-raw-site.js';

let fed: TestFederation | undefined;
const procs: Proc[] = [];
let raw: SecureRawSite | undefined;
const stopEvents = new AbortController();
afterEach(async () => {
  stopEvents.abort();
  raw?.close();
  for (const p of procs.splice(0).reverse()) await p.stop();
  await fed?.cleanup();
  fed = undefined;
});

/** Every way a secret could be written out: hex, base64, base64url, and pino's JSON of a Buffer. */
function encodings(secret: Uint8Array): string[] {
  const b = Buffer.from(secret);
  return [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64').replace(/=+$/, ''), b.toString('base64url'), `[${[...b.subarray(0, 12)].join(',')}`];
}

function leaks(text: string, secrets: ReadonlyMap<string, Uint8Array>): string[] {
  const found: string[] = [];
  for (const [name, secret] of secrets) for (const e of encodings(secret)) if (text.includes(e)) found.push(`${name} as ${e.slice(0, 16)}…`);
  return found;
}

function byteCounts(bytes: Buffer): Uint32Array {
  const counts = new Uint32Array(256);
  for (const b of bytes) counts[b]! += 1;
  return counts;
}

describe('a real secure federation with one raw site whose secrets are known', () => {
  it('spools only uniform-looking masked words, and writes no seed, share or private key to logs, events or the journal', async () => {
    fed = await createTestFederation({ sites: 4, run: secureRun({ rounds: 1, strategy: { name: 'diloco' }, evaluate: true, minSites: 3 }) });
    await fed.patchCoordinatorConfig((c) => ({ ...c, log: { level: 'trace' } }));
    for (const s of ['site-1', 'site-2', 'site-3']) await fed.patchSiteConfig(s, (c) => ({ ...c, log: { level: 'trace' } }));
    const coordinator = await startCoordinatorProcess(fed);
    procs.push(coordinator);
    const admin = fed.admin();
    await admin.waitForReady(Date.now() + 30_000);
    const events: AdminEvent[] = [];
    void admin.events((e) => events.push(e), stopEvents.signal).catch(() => undefined);
    for (const s of ['site-1', 'site-2', 'site-3']) procs.push(await startSiteProcess(fed, s));
    raw = new SecureRawSite(fed, 'site-4', 'secrets-of-site-4');
    await raw.connect();

    const spoolChecks: { file: string; bytes: number; chiBytes: number; chiHigh: number }[] = [];
    const committed = whileAlive(waitForCommitted(admin, 1, 120_000), procs);
    const part = participate(
      raw,
      1,
      {
        samples: 800,
        delta: siteDelta('site-4', 1),
        // Every upload is verified and spooled; the coordinator waits for this signature before
        // anything is unmasked: read what it holds.
        async beforeSign() {
          const dir = join(coordinatorStateDir(fed!), 'spool', 'round-1.0');
          for (const name of (await readdir(dir)).filter((n) => n.endsWith('.delta'))) {
            const bytes = await readFile(join(dir, name));
            const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
            const high = new Uint32Array(256);
            for (const w of words) high[w >>> 24]! += 1;
            spoolChecks.push({ file: name, bytes: bytes.length, chiBytes: chiSquared(byteCounts(bytes)), chiHigh: chiSquared(high) });
          }
        },
      },
      committed,
    );
    const rounds = await committed;
    const outcome = await part;
    expect(outcome.map((o) => o.outcome)).toEqual(['revealed']);
    const info = rounds.rounds.find((r) => r.outcome === 'committed')!;
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);

    // χ² at the coordinator: four spools, bytes and the top byte of each word uniform (α = 1e-4).
    expect(spoolChecks.map((c) => c.file).sort()).toEqual(['site-1.delta', 'site-2.delta', 'site-3.delta', 'site-4.delta']);
    for (const c of spoolChecks) {
      expect(c.chiBytes, `${c.file} bytes`).toBeLessThan(chiSquaredCritical(255));
      expect(c.chiHigh, `${c.file} high bytes`).toBeLessThan(chiSquaredCritical(255));
    }
    // The spool goes once the round is committed (deleted after the commit line, so waited for).
    const spoolDir = join(coordinatorStateDir(fed), 'spool');
    await waitUntil('the round\'s spool deleted', async () => (await readdir(spoolDir)).every((d) => !d.startsWith('round-1.')), 30_000, 100);

    // Secrets of site-4: every random byte it drew (X25519 private keys, self seed, Shamir
    // coefficients, GCM nonces), its pairwise mask seeds and every share it held and revealed.
    const session = [...raw.sessions.values()][0]!.session;
    const secrets = new Map<string, Uint8Array>();
    raw.drawn.forEach((d, i) => d.length >= 16 && secrets.set(`random draw ${i} (${d.length} bytes)`, d));
    for (const m of session.masks().pairwise) secrets.set(`pairwise seed with ${m.peer}`, m.seed);
    secrets.set('self seed', session.masks().selfSeed);
    for (const r of [...raw.revealed.values()].flat()) secrets.set(`share of ${r.owner}'s ${r.kind} (x=${r.x})`, r.y);
    expect(secrets.size).toBeGreaterThan(10);

    await new Promise((r) => setTimeout(r, 500)); // let the last log lines and events arrive
    const texts = new Map<string, string>([
      ['journal', await readFile(journalPath(fed), 'utf8')],
      ['events', JSON.stringify(events)],
    ]);
    for (const p of procs) texts.set(p.log, await p.logText());
    expect(events.length).toBeGreaterThan(5);
    expect(texts.get(coordinator.log)).toMatch(/"log":\{"level":"trace"\}/); // it ran at its most verbose
    for (const [where, text] of texts) expect(leaks(text, secrets), where).toEqual([]);
    // The search finds a secret where there is one.
    const probe = [...secrets.values()][3]!;
    expect(leaks(`{"x":${JSON.stringify(Buffer.from(probe))}}`, secrets).length).toBeGreaterThan(0);
    expect(leaks(Buffer.from(probe).toString('base64'), secrets).length).toBeGreaterThan(0);
  }, 150_000);
});
