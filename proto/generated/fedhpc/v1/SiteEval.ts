// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface SiteEval {
  'siteId'?: (string);
  'loss'?: (number | string);
  'samples'?: (number | string | Long);
}

export interface SiteEval__Output {
  'siteId': (string);
  'loss': (number);
  'samples': (string);
}
