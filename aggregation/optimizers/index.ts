/** Server optimizers (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad, DiLoCo). */
export {
  type OptimizerName,
  type OptimizerOptions,
  type ResolvedOptimizerOptions,
  OPTIMIZER_NAMES,
  optimizerDefaults,
  OPTIMIZER_DEFAULTS,
  parseOptimizerOptions,
} from './options.js';
export { type ServerOptimizer, createOptimizer } from './server-optimizer.js';
