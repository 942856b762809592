// Original file: proto/fedhpc/v1/fedhpc.proto

import type { StagedTensor as _fedhpc_v1_StagedTensor, StagedTensor__Output as _fedhpc_v1_StagedTensor__Output } from '../../fedhpc/v1/StagedTensor';
import type { Long } from '@grpc/proto-loader';

export interface StagedFile {
  'slot'?: (string);
  'path'?: (string);
  'tensors'?: (_fedhpc_v1_StagedTensor)[];
  'size'?: (number | string | Long);
}

export interface StagedFile__Output {
  'slot': (string);
  'path': (string);
  'tensors': (_fedhpc_v1_StagedTensor__Output)[];
  'size': (string);
}
