/**
 * The shipped sbatch templates, rendered as the slurm runner renders them for every combination of
 * `runner.modules` and `runner.env` that docs/operators.md shows: sbatch reads `#SBATCH` lines only
 * up to the first command, so the directives must come first and every setup line must be live
 * exactly once, after them (and never inside the header comment).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RunnerConfigError } from '../../../site-agent/runners/round-dir.js';
import { renderJobScript, setupLines } from '../../../site-agent/runners/sbatch-template.js';
import type { SlurmCommands } from '../../../site-agent/runners/slurm-cli.js';
import { SlurmRunner, slurmRunnerSchema, type SlurmRunnerOptions } from '../../../site-agent/runners/slurm.js';

const SLURM_DIR = new URL('../../../deploy/slurm/', import.meta.url);
const read = (name: string): string => readFileSync(fileURLToPath(new URL(name, SLURM_DIR)), 'utf8');

/** The NeMo recipe's site constants, filled in once per copy as docs/nemo.md's sed line does. */
const NEMO_SITE = {
  nodes: '2',
  gpus_per_node: '4',
  cpus_per_task: '16',
  container_runtime: 'pyxis',
  container_image: 'nvcr.io#nvidia/nemo:25.09',
  container_mounts: '/scratch:/scratch',
  python: 'python',
  entry: '/opt/fedhpc/deploy/slurm/nemo_shard.py',
  nemo_flags: '',
};
const fillSite = (text: string): string => Object.entries(NEMO_SITE).reduce((t, [k, v]) => t.replaceAll(`{{${k}}}`, v), text);

const TEMPLATES = [
  { name: 'train.sbatch.tmpl', text: () => read('train.sbatch.tmpl'), directives: [] as string[] },
  { name: 'nemo-shard.sbatch', text: () => fillSite(read('nemo-shard.sbatch')), directives: ['--nodes=2', '--ntasks-per-node=4', '--gpus-per-node=4', '--cpus-per-task=16'] },
];

/** Every combination of modules and env the operator guide shows: none, one, several of each. */
const MODULES: string[][] = [[], ['cuda/12.4'], ['python/3.11', 'cuda/12.4']];
const ENVS: Record<string, string>[] = [{}, { HF_HOME: '/scratch/hf' }, { HF_HOME: '/scratch/hf', NCCL_DEBUG: 'WARN' }];

const site = (extra: Partial<SlurmRunnerOptions>) =>
  slurmRunnerSchema.parse({ kind: 'slurm', partition: 'acc', account: 'ehpc01', gpus: 4, timeLimit: '2:00:00', python: '/apps/venv/bin/python', trainer: '/apps/torch_shard.py', ...extra });

/** What sbatch sees: the `#SBATCH` lines before the first command, and any after it (ignored). */
function parse(script: string): { directives: string[]; ignored: string[]; live: string[] } {
  const lines = script.split('\n');
  const first = lines.findIndex((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const head = first < 0 ? lines : lines.slice(0, first);
  const tail = first < 0 ? [] : lines.slice(first);
  const opt = (l: string): string => l.replace(/^#SBATCH\s+/, '');
  return {
    directives: head.filter((l) => l.startsWith('#SBATCH')).map(opt),
    ignored: tail.filter((l) => /^\s*#SBATCH/.test(l)).map(opt),
    live: tail.filter((l) => !l.trimStart().startsWith('#')),
  };
}

describe('sbatch templates rendered for every documented modules × env combination', () => {
  for (const t of TEMPLATES) {
    for (const modules of MODULES) {
      for (const env of ENVS) {
        for (const requeue of [true, false]) {
          it(`${t.name}, modules ${JSON.stringify(modules)}, env ${JSON.stringify(Object.keys(env))}, requeue ${requeue}: directives first, setup live once after them`, () => {
            const o = site({ modules, env });
            const script = renderJobScript(t.text(), o, { roundDir: '/scratch/fedhpc/rounds/r3', name: 'fedhpc-r3-a1-x', command: "'/apps/venv/bin/python' '/apps/torch_shard.py'", requeue, timeLimit: o.timeLimit });
            const { directives, ignored, live } = parse(script);
            expect(ignored).toEqual([]);
            expect(directives).toEqual(expect.arrayContaining(['--job-name=fedhpc-r3-a1-x', '--partition=acc', '--account=ehpc01', '--gpus=4', '--time=2:00:00', requeue ? '--requeue' : '--no-requeue', ...t.directives]));
            for (const line of setupLines(o)) {
              expect(script.split('\n').filter((l) => l.includes(line.slice(0, 40)))).toEqual([line]);
              expect(live).toContain(line);
            }
            const check = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
            expect(check.stderr).toBe('');
            expect(check.status).toBe(0);
          });
        }
      }
    }
  }
});

describe('slurm runner: templates whose rendering would hide directives from sbatch', () => {
  const cli: SlurmCommands = {
    missing: () => [],
    sbatch: () => Promise.reject(new Error('not in this test')),
    jobInfo: () => Promise.reject(new Error('not in this test')),
    jobsNamed: () => Promise.resolve([]),
    scancel: () => Promise.resolve(),
  };
  const runner = (templateInline: string, extra: Partial<SlurmRunnerOptions> = {}): SlurmRunner => new SlurmRunner(site({ templateInline, ...extra }), { workDir: '/nonexistent', cli });
  const refusal = (f: () => unknown): RunnerConfigError => {
    try {
      f();
    } catch (err) {
      if (err instanceof RunnerConfigError) return err;
      throw err;
    }
    throw new Error('no RunnerConfigError');
  };

  it('refuses {{setup}} or {{directives}} inside a comment, whatever the config renders them to', () => {
    for (const name of ['setup', 'directives', 'run']) {
      const err = refusal(() => runner(`#!/bin/bash\n# ${name}: #   {{${name}}}  the lines of runner.modules\n{{directives}}\n{{setup}}\n{{run}}\n`));
      expect(err.code).toBe('RUNNER_CONFIG_INVALID');
      expect(err.message).toMatch(new RegExp(`line 2: \\{\\{${name}\\}\\} must stand alone on its line`));
    }
  });

  it('refuses a template whose #SBATCH lines come after the first command', () => {
    const err = refusal(() => runner('#!/bin/bash\nset -u\n{{directives}}\n{{setup}}\n{{run}}\n'));
    expect(err.code).toBe('RUNNER_CONFIG_INVALID');
    expect(err.message).toMatch(/#SBATCH lines after the first command \(line 2: set -u\), which sbatch ignores: --job-name=/);
  });

  it('accepts both shipped templates with modules and env set', () => {
    const extra = { modules: ['python/3.11', 'cuda/12.4'], env: { HF_HOME: '/scratch/hf', NCCL_DEBUG: 'WARN' } };
    for (const t of TEMPLATES) expect(() => runner(t.text(), extra)).not.toThrow();
  });
});
