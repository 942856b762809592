// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UploadHeader as _fedhpc_v1_UploadHeader, UploadHeader__Output as _fedhpc_v1_UploadHeader__Output } from '../../fedhpc/v1/UploadHeader';
import type { UploadChunk as _fedhpc_v1_UploadChunk, UploadChunk__Output as _fedhpc_v1_UploadChunk__Output } from '../../fedhpc/v1/UploadChunk';
import type { UploadTrailer as _fedhpc_v1_UploadTrailer, UploadTrailer__Output as _fedhpc_v1_UploadTrailer__Output } from '../../fedhpc/v1/UploadTrailer';
import type { TensorDigest as _fedhpc_v1_TensorDigest, TensorDigest__Output as _fedhpc_v1_TensorDigest__Output } from '../../fedhpc/v1/TensorDigest';

export interface UploadMessage {
  'header'?: (_fedhpc_v1_UploadHeader | null);
  'chunk'?: (_fedhpc_v1_UploadChunk | null);
  'trailer'?: (_fedhpc_v1_UploadTrailer | null);
  'digest'?: (_fedhpc_v1_TensorDigest | null);
  'kind'?: "header"|"chunk"|"trailer"|"digest";
}

export interface UploadMessage__Output {
  'header'?: (_fedhpc_v1_UploadHeader__Output | null);
  'chunk'?: (_fedhpc_v1_UploadChunk__Output | null);
  'trailer'?: (_fedhpc_v1_UploadTrailer__Output | null);
  'digest'?: (_fedhpc_v1_TensorDigest__Output | null);
  'kind'?: "header"|"chunk"|"trailer"|"digest";
}
