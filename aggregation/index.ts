/**
 * Public surface of `aggregation/`, the pure library of fedhpc: typed errors, the project's one
 * `Result` type and `invariant` helper, streaming safetensors, weighted accumulation and server
 * optimizers, the partition of a model over aggregator shards. No files, sockets or other parts:
 * callers hand it byte sources and sinks.
 */
export { AGGREGATION_ERROR_CODES, AggregationError, type AggregationErrorCode, type AggregationErrorContext } from './errors.js';
export { type CodedErrorClass, type Err, type FailureContext, type Ok, type Result, err, ok, unwrap } from './result.js';
export { InvariantError, invariant } from './invariant.js';
export * from './safetensors/index.js';
export { type AccumulatorEncoding, type TensorLayoutEntry, WeightedAccumulator, checkFinite, checkFiniteBf16 } from './accumulator.js';
export * from './optimizers/index.js';
export * from './secagg/index.js';
export * from './kernels/index.js';
export {
  type DeltaEncoding,
  type Piece,
  type Segment,
  deltaSegments,
  encodedTensorBytes,
  isSecureEncoding,
  isUnitBoundary,
  segmentAt,
  segmentsBytes,
  stripePieces,
} from './wire-layout.js';
export {
  PARTITION_ALIGN_VALUES,
  type ModelPartition,
  type PartByteRange,
  type PartitionOptions,
  type PartitionPart,
  type PartitionTensor,
  type ResolvedPartitionOptions,
  checkShardRangesTile,
  partitionModel,
  resolvePartitionOptions,
  shardByteRanges,
  shardFileRanges,
  type FileTensor,
} from './partition.js';
export { type UploadWeight, type UploadWeightCode, type WorkPart, discountedCount, uploadWeight } from './staleness.js';
export { type LoadedNative, type NativeKernels, nativeKernels, nativeKeystreamUnavailable, nativeUnavailable, useNativeKernels } from './native.js';
export { Sha256 } from './sha256.js';
