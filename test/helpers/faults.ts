/**
 * Helpers for fault-injection tests: the coordinator's journal and log as parsed records, and the
 * files under a folder.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { recordsOf, type RoundCommittedRecord } from '../../coordinator/state/records.js';
import type { Proc, TestFederation } from './federation.js';

/** One line of a coordinator's journal, as written. */
export interface JournalLine {
  readonly seq: number;
  readonly ts: number;
  readonly prev: string;
  readonly hash: string;
  readonly body: { readonly type: string; readonly [key: string]: unknown };
}

/** The coordinator's state folder of a test federation. */
export function coordinatorStateDir(fed: TestFederation): string {
  return join(fed.dir, 'coordinator', 'state');
}

/** The coordinator's journal file of a test federation. */
export function journalPath(fed: TestFederation): string {
  return join(coordinatorStateDir(fed), 'journal.jsonl');
}

/**
 * Parses a JSON-lines file (every line must be JSON). A last line without its newline is still
 * being written (a live log or journal) or was cut by a kill: it is left out, not parsed in half,
 * as the coordinator's own journal reader cuts a torn last line off (coordinator/state/journal.ts).
 */
export async function readJsonLines<T = Record<string, unknown>>(path: string): Promise<T[]> {
  const text = await readFile(path, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** Journal record bodies of one type, oldest first. */
export async function journalBodies(path: string, type: string): Promise<Record<string, unknown>[]> {
  return (await readJsonLines<JournalLine>(path)).map((r) => r.body).filter((b) => b.type === type);
}

/** The committed rounds of `runId` (the test federations' run by default), oldest first, typed as the coordinator writes them. */
export async function committedRecords(fed: TestFederation, runId = 'test-run'): Promise<RoundCommittedRecord[]> {
  return recordsOf((await readJsonLines<JournalLine>(journalPath(fed))).map((r) => r.body), runId, 'round-committed');
}

/** A pino log line. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** The JSON lines of a process log (pino); lines that are not JSON (a crash trace) are skipped. */
export function parseLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a partial last line
    }
  }
  return out;
}

/** Every file below `dir` (paths relative to it); empty when `dir` does not exist. */
export async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(join(dir, prefix), { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? join(prefix, e.name) : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/** True while the process has not exited. */
export function isRunning(child: { exitCode: number | null; signalCode: NodeJS.Signals | null }): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * An upload rate (bytes/s) at which a site's delta takes about `seconds` to send. A delta is as
 * large as the model's tensors, so the initial model file's size is a close upper bound.
 */
export async function uploadRateFor(fed: TestFederation, seconds: number): Promise<number> {
  const { size } = await stat(fed.files.initialModel);
  return Math.max(1, Math.floor(size / seconds));
}

/**
 * `p`, unless one of `procs` exits first: then a rejection naming the process and its exit, so a
 * test whose helper process crashed fails at once instead of timing out.
 */
export function whileAlive<T>(p: Promise<T>, procs: readonly Proc[]): Promise<T> {
  let settled = false;
  const died = new Promise<never>((_, reject) => {
    for (const proc of procs) {
      void proc.exited.then((code) => {
        if (!settled) reject(new Error(`${proc.log.replace(/^.*\//, '').replace(/\.log$/, '')} exited unexpectedly (${String(code)})`));
      });
    }
  });
  return Promise.race([p, died]).finally(() => {
    settled = true;
  });
}
