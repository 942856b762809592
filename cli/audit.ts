/**
 * `fedhpc admin audit verify | export`: checks the audit trail (hash chain and site receipts) of a
 * state dir or a JetStream stream, or writes it out as JSON lines. Reads files and NATS only; it
 * needs no coordinator and no admin certificate, so an auditor can run it on a copy.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { invariant } from '../aggregation/index.js';
import { DEFAULT_AUDIT_STREAM, exportLines, importStateDirJournal, journalStreamName, journalSubject, readJournalStreamTrail, readStateDirTrail, readStreamTrail, verifyAudit, type AuditLine, type AuditReport } from '../coordinator/index.js';
import { UsageError, isUsageError } from './usage-error.js';
import { printable } from '../common/text.js';

const USAGE = `usage:
  fedhpc admin audit verify (--state-dir DIR | --nats URL [--stream NAME] [--subject SUBJECT] | --nats URL --journal FEDERATION) [--ca FILE] [--require-receipts] [--json]
  fedhpc admin audit export (--state-dir DIR | --nats URL [--stream NAME] [--subject SUBJECT] | --nats URL --journal FEDERATION) [--out FILE] [--json]
  fedhpc admin audit import --state-dir DIR --nats URL --journal FEDERATION [--replicas N] [--json]
  (--journal: the replicated journal of a standby-coordinator federation, read by the chain rule;
   import publishes a state dir's journal into that empty stream, to move a federation to a pair)
`;


type Out = (s: string) => void;

/** Runs `fedhpc admin audit …` with the arguments after `audit`; returns the exit code (1: broken trail, 2: usage). */
export async function runAudit(args: string[], out: Out = (s) => void process.stdout.write(`${s}\n`), err: Out = (s) => void process.stderr.write(`${s}\n`)): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: {
        'state-dir': { type: 'string' },
        nats: { type: 'string' },
        stream: { type: 'string', default: DEFAULT_AUDIT_STREAM },
        subject: { type: 'string' },
        ca: { type: 'string' },
        out: { type: 'string' },
        journal: { type: 'string' },
        replicas: { type: 'string', default: '3' },
        'require-receipts': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    const [command, ...extra] = positionals;
    if (command !== 'verify' && command !== 'export' && command !== 'import') throw new UsageError(`audit needs a command: verify | export | import`);
    if (extra.length > 0) throw new UsageError(`audit ${command} takes no positional arguments, got ${extra.join(' ')}`);
    const stateDir = values['state-dir'];
    if (command === 'import') return await importCommand(stateDir, values, out);
    if ((stateDir === undefined) === (values.nats === undefined)) throw new UsageError('give exactly one of --state-dir DIR or --nats URL');
    if (values.journal !== undefined && (stateDir !== undefined || values.subject !== undefined || values.stream !== DEFAULT_AUDIT_STREAM)) throw new UsageError('--journal FEDERATION goes with --nats URL alone (its stream and subject follow from the federation)');
    const { lines, source, ignored } = await readTrail(stateDir, values);
    if (ignored > 0) err(`${ignored} message${ignored === 1 ? '' : 's'} in the journal stream extend no chain (a racing or fenced writer, or garbage): not part of the trail`);
    if (command === 'export') return await exportTrail(lines, values.out, values.json === true, out);
    const ca = values.ca === undefined ? undefined : await readCa(values.ca);
    const report = verifyAudit(lines, { ...(ca ? { ca } : {}), requireReceipts: values['require-receipts'] === true });
    if (values.json) out(JSON.stringify({ source, ...report }));
    // A journal's text is whatever was journaled (or tampered in): printed as data.
    else out(printable(humanReport(source, report), { keepNewlines: true }));
    return report.ok ? 0 : 1;
  } catch (e) {
    if (isUsageError(e)) {
      err(`${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    err(`audit failed: ${printable((e as Error).message, { keepNewlines: true })}`);
    return 1;
  }
}

/** `audit import`: a state dir's journal into a pair's empty journal stream, its chain intact. */
async function importCommand(stateDir: string | undefined, values: { nats?: string | undefined; journal?: string | undefined; replicas: string; json?: boolean | undefined }, out: Out): Promise<number> {
  if (stateDir === undefined || values.nats === undefined || values.journal === undefined) throw new UsageError('audit import needs --state-dir DIR, --nats URL and --journal FEDERATION');
  const replicas = Number(values.replicas);
  if (![1, 3, 5].includes(replicas)) throw new UsageError(`--replicas must be 1, 3 or 5, got ${JSON.stringify(values.replicas)}`);
  const r = await importStateDirJournal({ stateDir, nats: { url: values.nats, timeoutMs: 10_000 }, federation: values.journal, replicas });
  out(values.json ? JSON.stringify({ imported: r.records, stream: r.stream, head: r.head }) : `imported ${r.records} records of ${stateDir} into ${r.stream} (head ${r.head}); the chain reads back intact`);
  return 0;
}

/** The trail and where it came from: a state dir, an audit stream, or a replicated journal (and what it ignored). */
async function readTrail(stateDir: string | undefined, values: { nats?: string | undefined; stream: string; subject?: string | undefined; journal?: string | undefined }): Promise<{ lines: AuditLine[]; source: string; ignored: number }> {
  if (stateDir !== undefined) return { lines: await readStateDirTrail(stateDir), source: `state dir ${stateDir}`, ignored: 0 };
  if (values.journal === undefined) return { lines: await readStreamTrail(streamOptions(values)), source: `stream ${values.stream} at ${values.nats}`, ignored: 0 };
  const stream = journalStreamName(values.journal);
  const read = await readJournalStreamTrail({ ...streamOptions(values), stream, subject: journalSubject(values.journal) });
  return { lines: read.lines, source: `journal stream ${stream} at ${values.nats}`, ignored: read.ignoredCount };
}

/** Where `--nats`, `--stream` and `--subject` say the trail is; the usage check leaves `--nats` when there is no `--state-dir`. */
function streamOptions(values: { nats?: string | undefined; stream: string; subject?: string | undefined }): Parameters<typeof readStreamTrail>[0] {
  const url = values.nats;
  invariant(url !== undefined, 'without --state-dir, the usage check leaves --nats');
  return { url, timeoutMs: 10_000, stream: values.stream, ...(values.subject ? { subject: values.subject } : {}) };
}

async function readCa(file: string): Promise<X509Certificate[]> {
  const text = await readFile(file, 'utf8');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new UsageError(`${file} holds no PEM certificate`);
  return blocks.map((b) => new X509Certificate(b));
}

async function exportTrail(lines: readonly AuditLine[], file: string | undefined, json: boolean, out: Out): Promise<number> {
  const text = exportLines(lines);
  const last = lines.at(-1);
  const head = last?.ok ? last.record.hash : undefined;
  if (file === undefined) {
    process.stdout.write(text);
    return 0;
  }
  await writeFile(file, text);
  out(json ? JSON.stringify({ records: lines.length, out: file, head }) : `exported ${lines.length} records to ${file}${head ? ` (head ${head})` : ''}`);
  return 0;
}

function humanReport(source: string, r: AuditReport): string {
  const rows = [
    `audit trail of ${source}`,
    `  records:          ${r.records}`,
    `  committed rounds: ${r.committedRounds}`,
    `  valid receipts:   ${r.receipts}${r.caChecked ? ' (certificates checked against the CA)' : ' (certificates NOT checked against a CA: pass --ca)'}`,
    `  head:             ${r.head}`,
  ];
  if (r.missingReceipts.length > 0) {
    rows.push(`  missing receipts: ${r.missingReceipts.length}`);
    for (const m of r.missingReceipts.slice(0, 20)) rows.push(`    run ${m.runId} round ${m.round}: site ${m.site}`);
    if (r.missingReceipts.length > 20) rows.push(`    … ${r.missingReceipts.length - 20} more`);
  }
  const b = r.firstBroken;
  rows.push(
    b
      ? `BROKEN at record ${b.index + 1}${b.seq !== undefined ? ` (seq ${b.seq}` : ' ('}${b.type ? `, ${b.type}` : ''}${b.hash ? `, hash ${b.hash}` : ''}): ${b.reason}`
      : 'OK: the chain is intact and every receipt verifies',
  );
  return rows.join('\n');
}
