// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ApproveSiteResponse {
  'siteId'?: (string);
  'certificateFingerprint'?: (string);
  'renewal'?: (boolean);
  'notAfterMs'?: (number | string | Long);
}

export interface ApproveSiteResponse__Output {
  'siteId': (string);
  'certificateFingerprint': (string);
  'renewal': (boolean);
  'notAfterMs': (string);
}
