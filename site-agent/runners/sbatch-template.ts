/**
 * The batch script of one Slurm job, rendered from a template (deploy/slurm/train.sbatch.tmpl, the
 * NeMo recipe deploy/slurm/nemo-shard.sbatch, or a site's copy): the `#SBATCH` directives and the
 * setup lines come from the site config, the run block from slurm-cli.ts. Pure: no Slurm, no disk.
 */
import { join } from 'node:path';
import { RunnerConfigError } from './round-dir.js';
import { runBlock, shellQuote as q, type ModelWait } from './slurm-cli.js';

/** What of the slurm runner's config (`ResolvedSlurmRunner`) goes into a batch script. */
export interface SbatchSite {
  readonly partition: string;
  readonly account?: string | undefined;
  readonly gpus?: number | string | undefined;
  readonly cpusPerTask?: number | undefined;
  readonly memory?: string | undefined;
  readonly signalLeadS: number;
  readonly cwd?: string | undefined;
  readonly sbatchOptions: readonly string[];
  readonly modules: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** One job to render: where it runs, its name, the command it starts, its resume path and limit. */
export interface SbatchJob {
  readonly roundDir: string;
  readonly name: string;
  readonly command: string;
  readonly requeue: boolean;
  readonly timeLimit: string;
  /** A job submitted ahead of its round's task: it waits for the model first (slurm-cli.ts). */
  readonly modelWait?: ModelWait | undefined;
}

/** The sbatch options of a job (without `#SBATCH `), in the order they are written. */
export function sbatchDirectives(o: SbatchSite, job: Omit<SbatchJob, 'command' | 'modelWait'>): string[] {
  return [
    `--job-name=${job.name}`,
    `--partition=${o.partition}`,
    ...(o.account ? [`--account=${o.account}`] : []),
    ...(o.gpus !== undefined && o.gpus !== 0 ? [`--gpus=${o.gpus}`] : []),
    ...(o.cpusPerTask ? [`--cpus-per-task=${o.cpusPerTask}`] : []),
    ...(o.memory ? [`--mem=${o.memory}`] : []),
    `--time=${job.timeLimit}`,
    ...(o.signalLeadS > 0 ? [`--signal=B:USR1@${o.signalLeadS}`] : []),
    job.requeue ? '--requeue' : '--no-requeue',
    `--output=${join(job.roundDir, 'slurm-%j.out')}`,
    '--open-mode=append', // a requeued run appends to its first run's output instead of erasing it
    `--chdir=${o.cwd ?? job.roundDir}`,
    ...o.sbatchOptions,
  ];
}

/** The `module load` and `export` lines of `runner.modules` and `runner.env`, one per line. */
export function setupLines(o: Pick<SbatchSite, 'modules' | 'env'>): string[] {
  return [
    ...(o.modules.length > 0 ? ['if ! type module >/dev/null 2>&1 && [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi'] : []),
    ...o.modules.map((m) => `module load ${q(m)} || { echo 'fedhpc: module load failed:' ${q(m)} >&2; exit 1; }`),
    ...Object.entries(o.env).map(([k, v]) => `export ${k}=${q(v)}`),
  ];
}

/** The batch script of `job`: every `{{placeholder}}` of `template` replaced. */
export function renderJobScript(template: string, o: SbatchSite, job: SbatchJob): string {
  const values: Record<string, string> = {
    directives: sbatchDirectives(o, job)
      .map((d) => `#SBATCH ${d}`)
      .join('\n'),
    setup: setupLines(o).join('\n'),
    run: runBlock(job.command, job.requeue, job.modelWait),
    round_dir: q(job.roundDir),
    job_name: job.name,
    partition: o.partition,
    time_limit: job.timeLimit,
    requeue: job.requeue ? '1' : '0',
  };
  return template.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (all, key: string) => {
    const v = values[key];
    if (v === undefined) throw new RunnerConfigError('slurm', [`template placeholder ${all} is unknown (known: ${Object.keys(values).join(', ')})`]);
    return v;
  });
}

/** Placeholders whose value spans several lines: each must be a line of its own in a template. */
const BLOCK_PLACEHOLDERS = ['directives', 'setup', 'run'] as const;

/**
 * Where a template puts a multi-line placeholder (`{{directives}}`, `{{setup}}`, `{{run}}`) beside
 * other text, as "line N: ..." issues. Inside a comment only its first rendered line would stay a
 * comment: the rest would run before the `#SBATCH` lines, and sbatch would ignore every directive.
 */
export function blockPlaceholderIssues(template: string): string[] {
  const issues: string[] = [];
  template.split('\n').forEach((line, i) => {
    for (const name of BLOCK_PLACEHOLDERS) {
      const at = new RegExp(`\\{\\{\\s*${name}\\s*\\}\\}`);
      if (at.test(line) && line.replace(at, '').trim() !== '') {
        issues.push(`line ${i + 1}: {{${name}}} must stand alone on its line (it renders to several lines; beside other text, or in a comment, all but the first would be live or out of place): ${line.trim()}`);
      }
    }
  });
  return issues;
}

/**
 * The `#SBATCH` lines of a rendered script that sbatch would ignore because they follow the first
 * command (sbatch stops reading directives there), with that command's line; undefined when none.
 */
export function ignoredDirectives(script: string): { readonly line: number; readonly command: string; readonly ignored: readonly string[] } | undefined {
  const lines = script.split('\n');
  const first = lines.findIndex((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  if (first < 0) return undefined;
  const ignored = lines
    .slice(first)
    .filter((l) => /^\s*#SBATCH\s/.test(l))
    .map((l) => l.replace(/^\s*#SBATCH\s+/, ''));
  return ignored.length === 0 ? undefined : { line: first + 1, command: lines[first]!.trim(), ignored };
}
