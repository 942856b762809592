/**
 * Optional components (torch, Slurm, …): a test that needs one skips and says why when it is
 * missing, unless FEDHPC_REQUIRE (comma-separated) names it — then its absence is a failure.
 */
import { spawnSync } from 'node:child_process';

/** Whether FEDHPC_REQUIRE names `component`. */
export function required(component: string): boolean {
  return (process.env['FEDHPC_REQUIRE'] ?? '').split(',').map((s) => s.trim()).includes(component);
}

/** Starts the one-node Slurm cluster (idempotent); returns why Slurm is unusable, or undefined. */
export function slurmUnavailable(): string | undefined {
  const start = spawnSync('bash', ['scripts/ci/start-slurm.sh'], { encoding: 'utf8', timeout: 600_000 });
  const sinfo = spawnSync('sinfo', ['-h', '-o', '%P %t'], { encoding: 'utf8', timeout: 15_000 });
  if (sinfo.status === 0 && sinfo.stdout.trim() !== '') return undefined;
  const why = (start.stderr ?? '').trim().split('\n').slice(-2).join(' ') || start.error?.message || '';
  return `sinfo does not answer (${(sinfo.stderr || sinfo.error?.message || 'no partitions').trim()})${why ? `; start-slurm.sh: ${why}` : ''}`;
}

/**
 * Starts the one-node Slurm cluster with slurmdbd (idempotent); returns why job accounting (sacct)
 * is unusable, or undefined. Tests that need it name the component `slurm-accounting`.
 */
export function slurmAccountingUnavailable(): string | undefined {
  const slurm = slurmUnavailable();
  if (slurm !== undefined) return slurm;
  const sacct = spawnSync('sacct', ['-n', '-X', '-P', '-o', 'JobIDRaw', '-S', 'now-1minutes'], {
    encoding: 'utf8',
    timeout: 15_000,
  });
  if (sacct.status === 0) return undefined;
  const why = (sacct.stderr || sacct.error?.message || `exit ${String(sacct.status ?? sacct.signal)}`).trim();
  return `sacct does not answer (${why})`;
}

/** Throws when a required component is missing; otherwise reports the skip once on stdout. */
export function skipUnless(component: string, unavailable: string | undefined): boolean {
  if (unavailable === undefined) return false;
  if (required(component)) throw new Error(`FEDHPC_REQUIRE names ${component}, but ${unavailable}`);
  process.stdout.write(`skipping ${component} tests: ${unavailable}\n`);
  return true;
}
