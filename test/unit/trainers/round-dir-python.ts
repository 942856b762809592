/**
 * Runs Python against deploy/slurm/fedhpc_round_dir.py, the trainers' side of the trainer contract,
 * on its own (standard library only, no torch): the code gets the module as `rd` and `refusal(fn)`,
 * which returns a Refusal as `{code, message}` (or None). Shared by the round-directory and the
 * persistent-session contract tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const SLURM_DIR = join(ROOT, 'deploy', 'slurm');
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
export const TIMEOUT_MS = 20_000;

const PRELUDE = `
import json, os, sys
sys.path.insert(0, ${JSON.stringify(SLURM_DIR)})
import fedhpc_round_dir as rd
def refusal(fn):
    try:
        fn()
    except rd.Refusal as e:
        return {"code": e.code, "message": str(e)}
    return None
`;

/** Runs `code` (with `args` as sys.argv[1:]) after the prelude. */
export function py(code: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(PYTHON, ['-c', `${PRELUDE}\n${code}`, ...args], { encoding: 'utf8', timeout: TIMEOUT_MS, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `code` and parses the JSON it prints last; it must exit 0 with nothing on stderr. */
export function pyJson<T>(code: string, args: string[] = []): T {
  const r = py(code, args);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** A Refusal as `refusal(fn)` returns it. */
export interface Refused {
  code: number;
  message: string;
}
