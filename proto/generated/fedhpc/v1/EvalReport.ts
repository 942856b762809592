// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface EvalReport {
  'runId'?: (string);
  'modelRound'?: (number | string | Long);
  'modelSha256'?: (string);
  'loss'?: (number | string);
  'samples'?: (number | string | Long);
}

export interface EvalReport__Output {
  'runId': (string);
  'modelRound': (string);
  'modelSha256': (string);
  'loss': (number);
  'samples': (string);
}
