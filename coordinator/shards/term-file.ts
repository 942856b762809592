/**
 * The highest leadership term an aggregator shard has followed, kept in `<stateDir>/term` (issue 22):
 * read when the shard starts, written — synced and renamed into place — before the shard acts on an
 * instruction of a higher term, so that a shard restarted after following term t still refuses a
 * leader of a term below t (a deposed leader that still talks cannot direct it).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinatorError } from '../core/errors.js';

const FILE = 'term';

/** The term kept in `stateDir`, 0 when none was kept; `STATE_CORRUPT` for a file that holds no term. */
export function readKeptTerm(stateDir: string): bigint {
  let text: string;
  try {
    text = readFileSync(join(stateDir, FILE), 'utf8');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return 0n;
    throw err;
  }
  if (!/^\d{1,20}\n$/.test(text)) {
    throw new CoordinatorError('STATE_CORRUPT', `${join(stateDir, FILE)} holds no leadership term (${JSON.stringify(text.slice(0, 40))}); remove it only if no leader of a higher term can exist`);
  }
  return BigInt(text.trim());
}

/** Keeps `term` in `stateDir`, durably, replacing the term kept before. */
export function keepTerm(stateDir: string, term: bigint): void {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, FILE);
  // Its own temporary name: two shards wrongly given one folder must not write into each other's.
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${term}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(stateDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
