// Original file: proto/fedhpc/v1/fedhpc.proto

import type { SiteEval as _fedhpc_v1_SiteEval, SiteEval__Output as _fedhpc_v1_SiteEval__Output } from '../../fedhpc/v1/SiteEval';
import type { Long } from '@grpc/proto-loader';

export interface RoundInfo {
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'outcome'?: (string);
  'participants'?: (string)[];
  'dropped'?: (string)[];
  'modelSha256'?: (string);
  'parentSha256'?: (string);
  'bytesUp'?: (number | string | Long);
  'bytesDown'?: (number | string | Long);
  'startedMs'?: (number | string | Long);
  'finishedMs'?: (number | string | Long);
  'reason'?: (string);
  'evals'?: (_fedhpc_v1_SiteEval)[];
  'evalLoss'?: (number | string);
  'hasEval'?: (boolean);
  'strategy'?: (string);
  'quantizationBound'?: (number | string);
}

export interface RoundInfo__Output {
  'round': (string);
  'attempt': (number);
  'outcome': (string);
  'participants': (string)[];
  'dropped': (string)[];
  'modelSha256': (string);
  'parentSha256': (string);
  'bytesUp': (string);
  'bytesDown': (string);
  'startedMs': (string);
  'finishedMs': (string);
  'reason': (string);
  'evals': (_fedhpc_v1_SiteEval__Output)[];
  'evalLoss': (number);
  'hasEval': (boolean);
  'strategy': (string);
  'quantizationBound': (number);
}
