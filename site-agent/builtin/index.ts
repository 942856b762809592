/**
 * Public surface of the builtin trainer: a seeded RNG, a generated multilingual corpus, a
 * character MLP language model with Adam training, and the bigram and centralised baselines.
 */
export { Rng, createRng } from './rng.js';
export { BuiltinErrorCode, BuiltinTrainerError, TrainingAbortedError, type BuiltinErrorContext } from './errors.js';
export {
  CHARSET,
  LANGUAGES,
  PAD_TOKEN,
  VOCAB_SIZE,
  decodeTokens,
  defaultSiteLanguages,
  encodeText,
  generateText,
  isLanguage,
  siteDataset,
  type Language,
  type SiteDataset,
  type SiteDatasetOptions,
} from './corpus.js';
export {
  BUILTIN_TENSOR_NAMES,
  BuiltinWorkspace,
  builtinConfigSchema,
  builtinTensorSpecs,
  cloneParams,
  evaluate,
  forwardBackward,
  forwardLoss,
  initBuiltinModel,
  resolveBuiltinConfig,
  type BuiltinConfigOptions,
  type BuiltinParams,
  type BuiltinTensorSpec,
  type EvalResult,
  type ForwardBackwardResult,
  type ResolvedBuiltinConfig,
} from './model.js';
export { trainShard, type AdamState, type TrainShardOptions, type TrainShardResult } from './train.js';
export { bigramEvalLoss } from './bigram.js';
export { trainCentral, type TrainCentralOptions, type TrainCentralResult } from './central.js';
