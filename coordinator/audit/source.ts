/**
 * Reading an audit trail for verification or export: the journal of a state dir (every line,
 * damaged ones included, so the verifier can name them), the records a JetStream stream holds, or
 * the chain of a replicated journal stream (the chain rule: what is off the chain is reported apart).
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoordinatorError } from '../core/errors.js';
import { natsConnectOptions, type NatsConnectSettings } from '../nats/options.js';
import type { IgnoredMessage } from '../state/chain-rule.js';
import { readJournalChain } from '../state/jetstream-journal.js';
import type { JournalRecord } from '../state/journal.js';
import type { AuditLine } from './verify.js';

/** The journal file of a state dir. */
export function journalFile(stateDir: string): string {
  return join(stateDir, 'journal.jsonl');
}

/** Parses JSON lines; a line that is not JSON (or a last line without newline) is kept as a broken line. */
export function parseAuditLines(text: string): AuditLine[] {
  if (text.length === 0) return [];
  const lines = text.split('\n');
  const complete = text.endsWith('\n');
  if (complete) lines.pop();
  return lines.map((line, i): AuditLine => {
    if (!complete && i === lines.length - 1) return { ok: false, reason: 'last line is incomplete (no newline): an append cut short' };
    try {
      return { ok: true, record: JSON.parse(line) as JournalRecord };
    } catch {
      return { ok: false, reason: 'line is not valid JSON' };
    }
  });
}

/** Reads the journal of `stateDir`; STATE_CORRUPT-free: damage is reported per line, a missing journal is an error. */
export async function readStateDirTrail(stateDir: string): Promise<AuditLine[]> {
  const file = journalFile(stateDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CoordinatorError('BAD_REQUEST', `${file} does not exist: is ${stateDir} a coordinator state dir?`);
    throw err;
  }
  return parseAuditLines(text);
}

export interface StreamTrailOptions extends NatsConnectSettings {
  readonly stream: string;
  /** Only this subject of the stream (e.g. `fedhpc.<federation>.audit`); default: every message. */
  readonly subject?: string;
}

/** Reads every record a JetStream stream holds, in stream order (an ordered consumer). */
export async function readStreamTrail(o: StreamTrailOptions): Promise<AuditLine[]> {
  const nc = await connect({ ...natsConnectOptions(o, 'fedhpc-audit'), reconnect: false });
  try {
    const jsm = await jetstreamManager(nc, { timeout: o.timeoutMs });
    const info = await jsm.streams.info(o.stream, o.subject ? { subjects_filter: o.subject } : {});
    // Fetch exactly what the stream holds: a fetch asking for more waits out its whole expiry.
    let remaining = o.subject ? (info.state.subjects?.[o.subject] ?? 0) : info.state.messages;
    if (remaining === 0) return [];
    const consumer = await jetstream(nc).consumers.get(o.stream, o.subject ? { filter_subjects: [o.subject] } : {});
    const lines: AuditLine[] = [];
    while (remaining > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(1000, remaining), expires: o.timeoutMs });
      let got = 0;
      for await (const m of batch) {
        got += 1;
        remaining = m.info.pending;
        try {
          lines.push({ ok: true, record: m.json<JournalRecord>() });
        } catch {
          lines.push({ ok: false, reason: `stream message ${m.seq} is not valid JSON` });
        }
      }
      if (got === 0) throw new CoordinatorError('INTERNAL', `stream ${o.stream} stopped delivering with ${remaining} message(s) left`);
    }
    return lines;
  } finally {
    await nc.close();
  }
}

/** A replicated journal's stream to read: where it is and how to reach it. */
export interface JournalStreamTrailOptions extends NatsConnectSettings {
  readonly stream: string;
  readonly subject: string;
}

/**
 * Reads the chain of a replicated journal stream (issue 19) through the chain rule that replay and
 * standbys use (`chainStep`): its records as trail lines, and the messages that are not on it
 * (racing or fenced writers, garbage), which are no break of the trail but are reported.
 */
export async function readJournalStreamTrail(o: JournalStreamTrailOptions): Promise<{ lines: AuditLine[]; ignored: IgnoredMessage[]; ignoredCount: number }> {
  const nc = await connect({ ...natsConnectOptions(o, 'fedhpc-audit'), reconnect: false });
  try {
    const chain = await readJournalChain(nc, { stream: o.stream, subject: o.subject, timeoutMs: o.timeoutMs });
    return { lines: chain.records.map((record) => ({ ok: true, record })), ignored: chain.ignored, ignoredCount: chain.ignoredCount };
  } finally {
    await nc.close();
  }
}

/** The trail as JSON lines (one record per line, exactly as stored). Broken lines are an error. */
export function exportLines(lines: readonly AuditLine[]): string {
  return lines
    .map((l, i) => {
      if (!l.ok) throw new CoordinatorError('STATE_CORRUPT', `record ${i + 1}: ${l.reason}`, { index: i });
      return `${JSON.stringify(l.record)}\n`;
    })
    .join('');
}
