// Original file: proto/fedhpc/v1/fedhpc.proto

import type { EncryptedShare as _fedhpc_v1_EncryptedShare, EncryptedShare__Output as _fedhpc_v1_EncryptedShare__Output } from '../../fedhpc/v1/EncryptedShare';
import type { Long } from '@grpc/proto-loader';

export interface SharesSubmission {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'shares'?: (_fedhpc_v1_EncryptedShare)[];
}

export interface SharesSubmission__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'shares': (_fedhpc_v1_EncryptedShare__Output)[];
}
