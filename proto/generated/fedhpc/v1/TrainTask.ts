// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ModelRef as _fedhpc_v1_ModelRef, ModelRef__Output as _fedhpc_v1_ModelRef__Output } from '../../fedhpc/v1/ModelRef';
import type { TensorSpec as _fedhpc_v1_TensorSpec, TensorSpec__Output as _fedhpc_v1_TensorSpec__Output } from '../../fedhpc/v1/TensorSpec';
import type { Encoding as _fedhpc_v1_Encoding, Encoding__Output as _fedhpc_v1_Encoding__Output } from '../../fedhpc/v1/Encoding';
import type { EncryptedShare as _fedhpc_v1_EncryptedShare, EncryptedShare__Output as _fedhpc_v1_EncryptedShare__Output } from '../../fedhpc/v1/EncryptedShare';
import type { Long } from '@grpc/proto-loader';

export interface TrainTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'globalModel'?: (_fedhpc_v1_ModelRef | null);
  'modelRound'?: (number | string | Long);
  'tensors'?: (_fedhpc_v1_TensorSpec)[];
  'encoding'?: (_fedhpc_v1_Encoding | null);
  'trainConfigJson'?: (string);
  'trainingDeadlineMs'?: (number | string | Long);
  'uploadDeadlineMs'?: (number | string | Long);
  'maxChunkBytes'?: (number);
  'evaluate'?: (boolean);
  'shares'?: (_fedhpc_v1_EncryptedShare)[];
  'shareHolders'?: (string)[];
  'maxStreams'?: (number);
  'maxStaleness'?: (number);
  'weighting'?: (string);
  'maxSiteWeight'?: (number | string);
}

export interface TrainTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'globalModel': (_fedhpc_v1_ModelRef__Output | null);
  'modelRound': (string);
  'tensors': (_fedhpc_v1_TensorSpec__Output)[];
  'encoding': (_fedhpc_v1_Encoding__Output | null);
  'trainConfigJson': (string);
  'trainingDeadlineMs': (string);
  'uploadDeadlineMs': (string);
  'maxChunkBytes': (number);
  'evaluate': (boolean);
  'shares': (_fedhpc_v1_EncryptedShare__Output)[];
  'shareHolders': (string)[];
  'maxStreams': (number);
  'maxStaleness': (number);
  'weighting': (string);
  'maxSiteWeight': (number);
}
