/** Public surface of the site-agent part. */
export { AGENT_VERSION, DROP_PHASES, SiteAgent, type DropPhase, type SiteAgentOptions } from './agent.js';
export { loadSiteConfig, siteConfigSchema, type ResolvedSiteConfig, type SiteOptions } from './config.js';
export { SiteAgentError } from './errors.js';
export { BuiltinRunner, readBuiltinModel, writeBuiltinModel } from './runners/builtin.js';
export type { Runner } from './runners/runner.js';
export { createRunner } from './runners/index.js';
export { CommandRunner, commandRunnerSchema } from './runners/command.js';
export { SlurmPendingError, SlurmRunner, slurmRunnerSchema } from './runners/slurm.js';
export { RunnerConfigError } from './runners/round-dir.js';
export {
  bigramEvalLoss,
  builtinTensorSpecs,
  defaultSiteLanguages,
  initBuiltinModel,
  resolveBuiltinConfig,
  siteDataset,
  trainCentral,
  VOCAB_SIZE,
} from './builtin/index.js';
export { AgentMetrics } from './metrics.js';
