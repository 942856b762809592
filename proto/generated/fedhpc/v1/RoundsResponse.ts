// Original file: proto/fedhpc/v1/fedhpc.proto

import type { RoundInfo as _fedhpc_v1_RoundInfo, RoundInfo__Output as _fedhpc_v1_RoundInfo__Output } from '../../fedhpc/v1/RoundInfo';
import type { SiteEval as _fedhpc_v1_SiteEval, SiteEval__Output as _fedhpc_v1_SiteEval__Output } from '../../fedhpc/v1/SiteEval';

export interface RoundsResponse {
  'rounds'?: (_fedhpc_v1_RoundInfo)[];
  'initialEvals'?: (_fedhpc_v1_SiteEval)[];
  'initialEvalLoss'?: (number | string);
  'hasInitialEval'?: (boolean);
}

export interface RoundsResponse__Output {
  'rounds': (_fedhpc_v1_RoundInfo__Output)[];
  'initialEvals': (_fedhpc_v1_SiteEval__Output)[];
  'initialEvalLoss': (number);
  'hasInitialEval': (boolean);
}
