// Original file: proto/fedhpc/v1/fedhpc.proto

import type { RoundUsage as _fedhpc_v1_RoundUsage, RoundUsage__Output as _fedhpc_v1_RoundUsage__Output } from '../../fedhpc/v1/RoundUsage';
import type { Long } from '@grpc/proto-loader';

export interface UsageRound {
  'round'?: (number | string | Long);
  'committedMs'?: (number | string | Long);
  'usage'?: (_fedhpc_v1_RoundUsage | null);
}

export interface UsageRound__Output {
  'round': (string);
  'committedMs': (string);
  'usage': (_fedhpc_v1_RoundUsage__Output | null);
}
