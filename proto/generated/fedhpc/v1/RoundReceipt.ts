// Original file: proto/fedhpc/v1/fedhpc.proto

import type { RoundUsage as _fedhpc_v1_RoundUsage, RoundUsage__Output as _fedhpc_v1_RoundUsage__Output } from '../../fedhpc/v1/RoundUsage';
import type { DeltaPartHash as _fedhpc_v1_DeltaPartHash, DeltaPartHash__Output as _fedhpc_v1_DeltaPartHash__Output } from '../../fedhpc/v1/DeltaPartHash';
import type { Long } from '@grpc/proto-loader';

export interface RoundReceipt {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'parentSha256'?: (string);
  'modelSha256'?: (string);
  'dataManifestSha256'?: (string);
  'signature'?: (Buffer | Uint8Array | string);
  'usage'?: (_fedhpc_v1_RoundUsage | null);
  'deltaSha256'?: (string);
  'deltaParts'?: (_fedhpc_v1_DeltaPartHash)[];
}

export interface RoundReceipt__Output {
  'runId': (string);
  'round': (string);
  'parentSha256': (string);
  'modelSha256': (string);
  'dataManifestSha256': (string);
  'signature': (Buffer);
  'usage': (_fedhpc_v1_RoundUsage__Output | null);
  'deltaSha256': (string);
  'deltaParts': (_fedhpc_v1_DeltaPartHash__Output)[];
}
