// Original file: proto/fedhpc/v1/fedhpc.proto

import type { RefusalCount as _fedhpc_v1_RefusalCount, RefusalCount__Output as _fedhpc_v1_RefusalCount__Output } from '../../fedhpc/v1/RefusalCount';
import type { HaStatus as _fedhpc_v1_HaStatus, HaStatus__Output as _fedhpc_v1_HaStatus__Output } from '../../fedhpc/v1/HaStatus';
import type { ShardStatus as _fedhpc_v1_ShardStatus, ShardStatus__Output as _fedhpc_v1_ShardStatus__Output } from '../../fedhpc/v1/ShardStatus';
import type { Long } from '@grpc/proto-loader';

export interface StatusResponse {
  'federation'?: (string);
  'coordinatorVersion'?: (string);
  'runId'?: (string);
  'runState'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'phase'?: (string);
  'roundsCommitted'?: (number | string | Long);
  'roundsTotal'?: (number | string | Long);
  'globalModelSha256'?: (string);
  'sitesConnected'?: (number);
  'sitesKnown'?: (number);
  'phaseDeadlineMs'?: (number | string | Long);
  'uptimeMs'?: (number | string | Long);
  'paused'?: (boolean);
  'stateDirBytes'?: (number | string | Long);
  'sitesRevoked'?: (number);
  'uploadBudgetBytes'?: (number | string | Long);
  'uploadBudgetUsedBytes'?: (number | string | Long);
  'uploadStreamsQueued'?: (number);
  'sitesMembers'?: (number);
  'recentRefusals'?: (_fedhpc_v1_RefusalCount)[];
  'refusalsWindowS'?: (number);
  'maxAppliedStalenessSteps'?: (number);
  'appliedStalenessLimit'?: (number);
  'lastRoundBytesUp'?: (number | string | Long);
  'ha'?: (_fedhpc_v1_HaStatus | null);
  'shards'?: (_fedhpc_v1_ShardStatus)[];
}

export interface StatusResponse__Output {
  'federation': (string);
  'coordinatorVersion': (string);
  'runId': (string);
  'runState': (string);
  'round': (string);
  'attempt': (number);
  'phase': (string);
  'roundsCommitted': (string);
  'roundsTotal': (string);
  'globalModelSha256': (string);
  'sitesConnected': (number);
  'sitesKnown': (number);
  'phaseDeadlineMs': (string);
  'uptimeMs': (string);
  'paused': (boolean);
  'stateDirBytes': (string);
  'sitesRevoked': (number);
  'uploadBudgetBytes': (string);
  'uploadBudgetUsedBytes': (string);
  'uploadStreamsQueued': (number);
  'sitesMembers': (number);
  'recentRefusals': (_fedhpc_v1_RefusalCount__Output)[];
  'refusalsWindowS': (number);
  'maxAppliedStalenessSteps': (number);
  'appliedStalenessLimit': (number);
  'lastRoundBytesUp': (string);
  'ha': (_fedhpc_v1_HaStatus__Output | null);
  'shards': (_fedhpc_v1_ShardStatus__Output)[];
}
