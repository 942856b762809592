/** Runner construction from the site config: every check a runner makes happens here, at start. */
import type { Logger } from '../../common/logger.js';
import type { ResolvedSiteConfig } from '../config.js';
import type { AgentMetrics } from '../metrics.js';
import { BuiltinRunner } from './builtin.js';
import { CommandRunner } from './command.js';
import { OverlapRunner } from './persistent.js';
import type { Runner } from './runner.js';
import { SlurmRunner } from './slurm.js';
import { StandinRunner } from './standin.js';

/** What a runner may report to besides its results: the agent's logger and metrics. */
export interface RunnerServices {
  readonly log?: Logger | undefined;
  readonly metrics?: Pick<AgentMetrics, 'modelWaited'> | undefined;
}

/** Builds the runner the site config names; throws RunnerConfigError when it cannot work. */
export function createRunner(config: ResolvedSiteConfig, services: RunnerServices = {}): Runner {
  // Overlapped runs train through a persistent session of whichever runner the site has.
  return new OverlapRunner(baseRunner(config, services), { workDir: config.workDir, log: services.log, stopGraceMs: STOP_GRACE_MS });
}

/** How long a persistent trainer gets after `STOP` at the run's end before it is killed. */
const STOP_GRACE_MS = 30_000;

function baseRunner(config: ResolvedSiteConfig, services: RunnerServices): Runner {
  const r = config.runner;
  switch (r.kind) {
    case 'builtin':
      return new BuiltinRunner(r);
    case 'command':
      return new CommandRunner(r);
    case 'slurm':
      return new SlurmRunner(r, { workDir: config.workDir, log: services.log, metrics: services.metrics });
    case 'standin':
      return new StandinRunner(r);
  }
}
