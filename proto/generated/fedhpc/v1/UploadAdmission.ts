// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UploadPart as _fedhpc_v1_UploadPart, UploadPart__Output as _fedhpc_v1_UploadPart__Output } from '../../fedhpc/v1/UploadPart';

export interface UploadAdmission {
  'parts'?: (_fedhpc_v1_UploadPart)[];
}

export interface UploadAdmission__Output {
  'parts': (_fedhpc_v1_UploadPart__Output)[];
}
