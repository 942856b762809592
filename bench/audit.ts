/**
 * `npm run bench -- audit [--records N] [--sites S] [--repeat R]`: how fast `fedhpc admin audit
 * verify` checks a trail of N records (default 100,000).
 *
 * The trail is a realistic journal: per round `round-opened`, `round-committed` with S participants
 * (default 4), one signed receipt per participant (ECDSA P-256, certificates from a real federation
 * CA) and an `eval` record. The baseline, in the same run and on the same file, is what the
 * coordinator already does at every start: `readJournal` (parse every line, recompute every hash,
 * check the links). `verify` does that plus every receipt: certificate against the CA (cached per
 * certificate), identity, agreement with its committed record, and the signature. Best of R runs.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { signReceipt } from '../common/receipt.js';
import { readStateDirTrail, verifyAudit, createCa, issueCertificate, GENESIS_HASH, readJournal, recordHash, type JournalBody, type JournalRecord } from '../coordinator/index.js';
import type { Benchmark } from './registry.js';

const FED = 'benchfed';

async function writeTrail(path: string, records: number, sites: number): Promise<{ receipts: number; ca: X509Certificate }> {
  const now = new Date(Date.now() - 60_000);
  const ca = await createCa({ federation: FED, validityDays: 30, now });
  const ids = Array.from({ length: sites }, (_, i) => `site-${i + 1}`);
  const certs = new Map<string, { certPem: string; keyPem: string; fingerprint: string }>();
  for (const id of ids) {
    const c = await issueCertificate({ ca, role: 'site', id, federation: FED, validityDays: 30, now });
    certs.set(id, { certPem: c.certPem, keyPem: c.keyPem!, fingerprint: new X509Certificate(c.certPem).fingerprint256 });
  }
  const out: string[] = [];
  let prev = GENESIS_HASH;
  let receipts = 0;
  const push = (body: JournalBody): JournalRecord => {
    const partial = { seq: out.length + 1, ts: Date.now(), prev, body };
    const r = { ...partial, hash: recordHash(partial) };
    out.push(JSON.stringify(r));
    prev = r.hash;
    return r;
  };
  const hex = (n: number, salt: string): string => (salt + n.toString(16)).padStart(64, '0').slice(-64);
  push({ type: 'run-started', runId: 'bench', initialModelSha256: hex(0, 'a'), config: { federation: FED } });
  for (const id of ids) push({ type: 'site-joined', site: id, fingerprint: certs.get(id)!.fingerprint, agentVersion: '0.1.0' });
  for (let round = 1; out.length < records; round++) {
    push({ type: 'round-opened', runId: 'bench', round, attempt: 0 });
    const participants = ids.map((site) => ({ site, weight: 100, samples: 100, tokens: 1000, steps: 50, trainLoss: 2.5, deltaSha256: hex(round, 'd'), dataManifestSha256: hex(round, 'e') }));
    const c = push({ type: 'round-committed', runId: 'bench', round, attempt: 0, participants, dropped: [], parentSha256: hex(round - 1, 'a'), modelSha256: hex(round, 'a'), strategy: { name: 'diloco', lr: 0.7, momentum: 0.9 }, serverStep: round, bytesUp: 1, bytesDown: 1, startedMs: 0 });
    for (const p of participants) {
      if (out.length >= records) break;
      const cert = certs.get(p.site)!;
      const fields = { federation: FED, runId: 'bench', round, site: p.site, parentSha256: hex(round - 1, 'a'), modelSha256: hex(round, 'a'), dataManifestSha256: p.dataManifestSha256 };
      push({ type: 'receipt', ...fields, committedHash: c.hash, certificatePem: cert.certPem, fingerprint: cert.fingerprint, signature: signReceipt(fields, cert.keyPem).toString('base64') });
      receipts += 1;
    }
    if (out.length < records) push({ type: 'eval', runId: 'bench', modelRound: round, modelSha256: hex(round, 'a'), sites: [], loss: 2.4, samples: 100 });
  }
  await writeFile(path, `${out.slice(0, records).join('\n')}\n`);
  return { receipts, ca: new X509Certificate(ca.certPem) };
}

async function best(repeat: number, fn: () => Promise<void>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < repeat; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return min;
}

export const audit: Benchmark = {
  async run(args, log) {
    const { values } = parseArgs({ args, options: { records: { type: 'string', default: '100000' }, sites: { type: 'string', default: '4' }, repeat: { type: 'string', default: '3' } }, strict: true });
    const records = Number(values.records);
    const sites = Number(values.sites);
    const repeat = Number(values.repeat);
    if (!Number.isSafeInteger(records) || records < 10 || !Number.isSafeInteger(sites) || sites < 1 || !Number.isSafeInteger(repeat) || repeat < 1) {
      throw new Error('--records ≥ 10, --sites ≥ 1 and --repeat ≥ 1 must be integers');
    }
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-audit-'));
    try {
      const path = join(dir, 'journal.jsonl');
      log(`writing a trail of ${records} records (${sites} sites per round, signed receipts) …`);
      const { receipts, ca } = await writeTrail(path, records, sites);
      const bytes = (await stat(path)).size;
      log(`trail: ${records} records, ${receipts} receipts, ${(bytes / 1e6).toFixed(1)} MB`);
      const baselineMs = await best(repeat, async () => void (await readJournal(path, { repairTornTail: false })));
      let ok = false;
      const verifyMs = await best(repeat, async () => {
        ok = verifyAudit(await readStateDirTrail(dir), { ca: [ca], requireReceipts: false }).ok;
      });
      if (!ok) throw new Error('the generated trail did not verify');
      const ratio = verifyMs / baselineMs;
      log(`baseline readJournal (chain only): ${baselineMs.toFixed(0)} ms`);
      log(`audit verify (chain + receipts):  ${verifyMs.toFixed(0)} ms = ${ratio.toFixed(2)}× baseline, ${Math.round(records / (verifyMs / 1000))} records/s, ${(((verifyMs - baselineMs) * 1000) / receipts).toFixed(1)} µs per receipt above the baseline`);
      return { records, receipts, sites, bytes, baselineMs: Math.round(baselineMs), verifyMs: Math.round(verifyMs), ratio: Number(ratio.toFixed(2)), recordsPerS: Math.round(records / (verifyMs / 1000)) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
