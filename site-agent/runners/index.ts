/** Runner construction from the site config: every check a runner makes happens here, at start. */
import type { ResolvedSiteConfig } from '../config.js';
import { BuiltinRunner } from './builtin.js';
import { CommandRunner } from './command.js';
import type { Runner } from './runner.js';
import { SlurmRunner } from './slurm.js';
import { StandinRunner } from './standin.js';

/** Builds the runner the site config names; throws RunnerConfigError when it cannot work. */
export function createRunner(config: ResolvedSiteConfig): Runner {
  const r = config.runner;
  switch (r.kind) {
    case 'builtin':
      return new BuiltinRunner(r);
    case 'command':
      return new CommandRunner(r);
    case 'slurm':
      return new SlurmRunner(r, { workDir: config.workDir });
    case 'standin':
      return new StandinRunner(r);
  }
}
