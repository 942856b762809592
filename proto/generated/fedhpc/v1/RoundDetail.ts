// Original file: proto/fedhpc/v1/fedhpc.proto

import type { AttemptInfo as _fedhpc_v1_AttemptInfo, AttemptInfo__Output as _fedhpc_v1_AttemptInfo__Output } from '../../fedhpc/v1/AttemptInfo';
import type { SiteEval as _fedhpc_v1_SiteEval, SiteEval__Output as _fedhpc_v1_SiteEval__Output } from '../../fedhpc/v1/SiteEval';
import type { Long } from '@grpc/proto-loader';

export interface RoundDetail {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempts'?: (_fedhpc_v1_AttemptInfo)[];
  'evals'?: (_fedhpc_v1_SiteEval)[];
  'evalLoss'?: (number | string);
  'hasEval'?: (boolean);
}

export interface RoundDetail__Output {
  'runId': (string);
  'round': (string);
  'attempts': (_fedhpc_v1_AttemptInfo__Output)[];
  'evals': (_fedhpc_v1_SiteEval__Output)[];
  'evalLoss': (number);
  'hasEval': (boolean);
}
