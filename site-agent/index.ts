/** Public surface of the site-agent part. */
export { AGENT_VERSION, SiteAgent, type SiteAgentOptions } from './agent.js';
export { DROP_PHASES, type DropPhase } from './faults.js';
export { builtinRunnerSchema, loadSiteConfig, siteConfigSchema, type ResolvedSiteConfig, type SiteOptions } from './config.js';
export { SiteAgentError } from './errors.js';
export { BuiltinRunner, readBuiltinModel, writeBuiltinModel } from './runners/builtin.js';
export type { Runner } from './runners/runner.js';
export { createRunner } from './runners/index.js';
export { CommandRunner, commandRunnerSchema } from './runners/command.js';
export { SlurmPendingError, SlurmRunner, slurmRunnerSchema } from './runners/slurm.js';
export { StandinRunner, standinRunnerSchema, type StandinRunnerOptions } from './runners/standin.js';
export { RunnerConfigError } from './runners/round-dir.js';
export {
  LANGUAGES,
  bigramEvalLoss,
  builtinTensorSpecs,
  createRng,
  defaultSiteLanguages,
  encodeText,
  evaluate,
  generateText,
  initBuiltinModel,
  resolveBuiltinConfig,
  siteDataset,
  trainCentral,
  VOCAB_SIZE,
  type BuiltinParams,
  type Language,
  type ResolvedBuiltinConfig,
} from './builtin/index.js';
export { AgentMetrics } from './metrics.js';
export { createSiteClient } from './client.js';
