// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UploadHeader as _fedhpc_v1_UploadHeader, UploadHeader__Output as _fedhpc_v1_UploadHeader__Output } from '../../fedhpc/v1/UploadHeader';
import type { UploadChunk as _fedhpc_v1_UploadChunk, UploadChunk__Output as _fedhpc_v1_UploadChunk__Output } from '../../fedhpc/v1/UploadChunk';
import type { UploadTrailer as _fedhpc_v1_UploadTrailer, UploadTrailer__Output as _fedhpc_v1_UploadTrailer__Output } from '../../fedhpc/v1/UploadTrailer';

export interface UploadMessage {
  'header'?: (_fedhpc_v1_UploadHeader | null);
  'chunk'?: (_fedhpc_v1_UploadChunk | null);
  'trailer'?: (_fedhpc_v1_UploadTrailer | null);
  'kind'?: "header"|"chunk"|"trailer";
}

export interface UploadMessage__Output {
  'header'?: (_fedhpc_v1_UploadHeader__Output | null);
  'chunk'?: (_fedhpc_v1_UploadChunk__Output | null);
  'trailer'?: (_fedhpc_v1_UploadTrailer__Output | null);
  'kind'?: "header"|"chunk"|"trailer";
}
