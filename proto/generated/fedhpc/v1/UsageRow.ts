// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UsageRound as _fedhpc_v1_UsageRound, UsageRound__Output as _fedhpc_v1_UsageRound__Output } from '../../fedhpc/v1/UsageRound';
import type { Long } from '@grpc/proto-loader';

export interface UsageRow {
  'runId'?: (string);
  'siteId'?: (string);
  'rounds'?: (number);
  'roundsWithoutReceipt'?: (number);
  'roundsUnknown'?: (number);
  'allocatedGpuMs'?: (number | string | Long);
  'trainingGpuMs'?: (number | string | Long);
  'sources'?: (string);
  'perRound'?: (_fedhpc_v1_UsageRound)[];
}

export interface UsageRow__Output {
  'runId': (string);
  'siteId': (string);
  'rounds': (number);
  'roundsWithoutReceipt': (number);
  'roundsUnknown': (number);
  'allocatedGpuMs': (string);
  'trainingGpuMs': (string);
  'sources': (string);
  'perRound': (_fedhpc_v1_UsageRound__Output)[];
}
