// Original file: proto/fedhpc/v1/fedhpc.proto

import type { RevealedShare as _fedhpc_v1_RevealedShare, RevealedShare__Output as _fedhpc_v1_RevealedShare__Output } from '../../fedhpc/v1/RevealedShare';
import type { Long } from '@grpc/proto-loader';

export interface UnmaskResponse {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'shares'?: (_fedhpc_v1_RevealedShare)[];
}

export interface UnmaskResponse__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'shares': (_fedhpc_v1_RevealedShare__Output)[];
}
