/**
 * Public surface of `aggregation/secagg/`: the pure cryptography of SecAgg+ (Bonawitz et al.
 * 2017; Bell et al. 2020) — X25519 keys and HKDF, signed key advertisements, AES-GCM share
 * encryption, Shamir sharing over 2^521 − 1, the AES-CTR mask PRG, fixed-point quantization, a
 * site's weight and the checks of an unmasked sum, masking in Z_2^b and the neighbour graph. No
 * I/O; randomness and clocks are injected.
 */
export {
  SECAGG_ERROR_CODES,
  SecAggError,
  type SecAggErrorCode,
  type SecAggErrorContext,
} from './errors.js';
export { type RandomBytes, compareSiteIds } from './encoding.js';
export {
  PAIRWISE_MASK_SEED_LABEL,
  SHARE_ENCRYPTION_LABEL,
  X25519_KEY_BYTES,
  type RoundContext,
  type X25519KeyPair,
  derivePairwiseMaskSeed,
  deriveShareEncryptionKey,
  exportX25519PrivateKey,
  exportX25519PublicKey,
  generateX25519KeyPair,
  importX25519PrivateKey,
  importX25519PublicKey,
  sharedSecret,
} from './keys.js';
export {
  ADVERTISEMENT_LABEL,
  type KeyAdvertisement,
  type SignedKeyAdvertisement,
  type VerifyAdvertisementOptions,
  encodeAdvertisement,
  signAdvertisement,
  verifyAdvertisement,
} from './advertise.js';
export {
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  SHARE_AAD_LABEL,
  SHARE_PAYLOAD_BYTES,
  type SealedShare,
  type ShareContext,
  type SharePayload,
  decodeSharePayload,
  encodeSharePayload,
  openShare,
  sealShare,
  shareAssociatedData,
} from './aead.js';
export {
  FIELD_PRIME,
  SHAMIR_MAX_X,
  SHAMIR_SECRET_BYTES,
  SHAMIR_SHARE_BYTES,
  type CombineOptions,
  type ShamirShare,
  combine,
  split,
  tryCombine,
} from './shamir.js';
export { PRG_CHUNK_BYTES, type MaskBits, type MaskWords, applyMask, expandMask, expandMaskInto, forEachKeystreamChunk } from './prg.js';
export {
  type FixedPointBudget,
  type QuantizeInput,
  type QuantizeOptions,
  checkFixedPointBudget,
  dequantizeSum,
  meanErrorBound,
  quantizationErrorBound,
  quantize,
  zeroLevel,
} from './quantize.js';
export {
  WEIGHTINGS,
  type DeclaredCounts,
  type Weighting,
  checkSumRange,
  checkWeightSum,
  declaredCount,
  encodedWeight,
  sumRangeBound,
  weightSumTolerance,
} from './bounds.js';
export {
  type DeltaSources,
  type DroppedPair,
  type MaskOptions,
  type MaskedEncodeInput,
  type PairwiseMask,
  type UnmaskOptions,
  addModular,
  maskDelta,
  maskDeltaAvailable,
  maskVector,
  pairwiseSign,
  quantizeAndMask,
  unmaskDequantize,
  unmaskSum,
  unmaskSumInPlace,
} from './mask.js';
export { MASK_SLICE_WORDS, MaskWorkspace, type MaskWorkspaceOptions } from './mask-workspace.js';
export {
  DEFAULT_COMPLETE_GRAPH_MAX_SITES,
  NEIGHBOUR_GRAPH_LABEL,
  type NeighbourGraph,
  type NeighbourGraphOptions,
  buildNeighbourGraph,
  defaultDegree,
} from './graph.js';
export { neighbourhoodThreshold, secureSessionId, sessionGraph, survivorListBytes } from './session.js';
