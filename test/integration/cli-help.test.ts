/**
 * Every `fedhpc` command answers `--help` (and `-h`): its usage on stdout, nothing on stderr, exit
 * 0 — before any option is checked, a config read or a connection made.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ADMIN_COMMANDS } from '../../cli/admin.js';
import { CLI } from '../helpers/federation.js';

const COMMANDS: readonly (readonly string[])[] = [
  [],
  ['simulate'],
  ['coordinator'],
  ['site'],
  ['site', 'enroll'],
  ['site', 'renew'],
  ['provision'],
  ['admin'],
  ...ADMIN_COMMANDS.map((c) => ['admin', c]),
  ['admin', 'audit'],
  ['admin', 'audit', 'verify'],
  ['admin', 'audit', 'export'],
  ['export'],
  ['export', 'verify'],
];

describe('fedhpc <command> --help', () => {
  for (const command of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      it(`fedhpc ${[...command, flag].join(' ')} prints its usage and exits 0`, () => {
        const r = spawnSync(process.execPath, [CLI, ...command, flag], { encoding: 'utf8', timeout: 20_000 });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/^usage:/);
        if (command.length > 0) expect(r.stdout).toContain(`fedhpc ${command[0]}`);
      });
    }
  }

  it('still refuses an unknown option with exit 2 and the usage on stderr', () => {
    const r = spawnSync(process.execPath, [CLI, 'simulate', '--no-such-option'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("Unknown option '--no-such-option'");
    expect(r.stdout).toBe('');
  });
});
