// Original file: proto/fedhpc/v1/fedhpc.proto

import type { KeyAdvertisement as _fedhpc_v1_KeyAdvertisement, KeyAdvertisement__Output as _fedhpc_v1_KeyAdvertisement__Output } from '../../fedhpc/v1/KeyAdvertisement';
import type { Long } from '@grpc/proto-loader';

export interface SharesTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'advertisements'?: (_fedhpc_v1_KeyAdvertisement)[];
}

export interface SharesTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'advertisements': (_fedhpc_v1_KeyAdvertisement__Output)[];
}
