// Original file: proto/fedhpc/v1/fedhpc.proto

import type { SurvivorSignature as _fedhpc_v1_SurvivorSignature, SurvivorSignature__Output as _fedhpc_v1_SurvivorSignature__Output } from '../../fedhpc/v1/SurvivorSignature';
import type { Long } from '@grpc/proto-loader';

export interface UnmaskTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'survivors'?: (string)[];
  'dropped'?: (string)[];
  'signatures'?: (_fedhpc_v1_SurvivorSignature)[];
}

export interface UnmaskTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'survivors': (string)[];
  'dropped': (string)[];
  'signatures': (_fedhpc_v1_SurvivorSignature__Output)[];
}
