// Original file: proto/fedhpc/v1/fedhpc.proto

import type { TransferPart as _fedhpc_v1_TransferPart, TransferPart__Output as _fedhpc_v1_TransferPart__Output } from '../../fedhpc/v1/TransferPart';

export interface DownloadAdmission {
  'parts'?: (_fedhpc_v1_TransferPart)[];
}

export interface DownloadAdmission__Output {
  'parts': (_fedhpc_v1_TransferPart__Output)[];
}
