// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ParticipantInfo {
  'siteId'?: (string);
  'weight'?: (number | string);
  'samples'?: (number | string | Long);
  'tokens'?: (number | string | Long);
  'steps'?: (number | string | Long);
  'trainLoss'?: (number | string);
  'deltaSha256'?: (string);
  'dataManifestSha256'?: (string);
  'staleness'?: (number);
  'foldedParts'?: (number);
  'foldedCount'?: (number | string);
  'busyFraction'?: (number | string);
  'appliedStaleness'?: (number);
  'busyMs'?: (number | string | Long);
}

export interface ParticipantInfo__Output {
  'siteId': (string);
  'weight': (number);
  'samples': (string);
  'tokens': (string);
  'steps': (string);
  'trainLoss': (number);
  'deltaSha256': (string);
  'dataManifestSha256': (string);
  'staleness': (number);
  'foldedParts': (number);
  'foldedCount': (number);
  'busyFraction': (number);
  'appliedStaleness': (number);
  'busyMs': (string);
}
