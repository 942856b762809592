// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ParticipantInfo as _fedhpc_v1_ParticipantInfo, ParticipantInfo__Output as _fedhpc_v1_ParticipantInfo__Output } from '../../fedhpc/v1/ParticipantInfo';
import type { PhaseTiming as _fedhpc_v1_PhaseTiming, PhaseTiming__Output as _fedhpc_v1_PhaseTiming__Output } from '../../fedhpc/v1/PhaseTiming';
import type { Long } from '@grpc/proto-loader';

export interface AttemptInfo {
  'attempt'?: (number);
  'outcome'?: (string);
  'reason'?: (string);
  'participants'?: (_fedhpc_v1_ParticipantInfo)[];
  'dropped'?: (string)[];
  'phases'?: (_fedhpc_v1_PhaseTiming)[];
  'bytesUp'?: (number | string | Long);
  'bytesDown'?: (number | string | Long);
  'modelSha256'?: (string);
  'parentSha256'?: (string);
  'startedMs'?: (number | string | Long);
  'finishedMs'?: (number | string | Long);
}

export interface AttemptInfo__Output {
  'attempt': (number);
  'outcome': (string);
  'reason': (string);
  'participants': (_fedhpc_v1_ParticipantInfo__Output)[];
  'dropped': (string)[];
  'phases': (_fedhpc_v1_PhaseTiming__Output)[];
  'bytesUp': (string);
  'bytesDown': (string);
  'modelSha256': (string);
  'parentSha256': (string);
  'startedMs': (string);
  'finishedMs': (string);
}
