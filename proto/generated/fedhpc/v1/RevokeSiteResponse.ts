// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface RevokeSiteResponse {
  'siteId'?: (string);
  'certificateFingerprints'?: (string)[];
  'droppedFromRound'?: (number | string | Long);
}

export interface RevokeSiteResponse__Output {
  'siteId': (string);
  'certificateFingerprints': (string)[];
  'droppedFromRound': (string);
}
