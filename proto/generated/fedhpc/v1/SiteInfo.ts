// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface SiteInfo {
  'siteId'?: (string);
  'connected'?: (boolean);
  'lastSeenMs'?: (number | string | Long);
  'activity'?: (string);
  'progress'?: (number | string);
  'agentVersion'?: (string);
  'bytesUp'?: (number | string | Long);
  'bytesDown'?: (number | string | Long);
  'roundsContributed'?: (number | string | Long);
  'certificateFingerprint'?: (string);
  'revoked'?: (boolean);
  'transferDirection'?: (string);
  'transferBytes'?: (number | string | Long);
  'transferTotal'?: (number | string | Long);
  'transferRateBytesPerS'?: (number | string);
  'transferEtaS'?: (number | string);
  'lastRound'?: (number | string | Long);
  'lastTokens'?: (number | string | Long);
  'lastSteps'?: (number | string | Long);
  'lastStaleness'?: (number);
  'lastFoldedParts'?: (number);
  'busyFraction'?: (number | string);
  'lastAppliedStaleness'?: (number);
}

export interface SiteInfo__Output {
  'siteId': (string);
  'connected': (boolean);
  'lastSeenMs': (string);
  'activity': (string);
  'progress': (number);
  'agentVersion': (string);
  'bytesUp': (string);
  'bytesDown': (string);
  'roundsContributed': (string);
  'certificateFingerprint': (string);
  'revoked': (boolean);
  'transferDirection': (string);
  'transferBytes': (string);
  'transferTotal': (string);
  'transferRateBytesPerS': (number);
  'transferEtaS': (number);
  'lastRound': (string);
  'lastTokens': (string);
  'lastSteps': (string);
  'lastStaleness': (number);
  'lastFoldedParts': (number);
  'busyFraction': (number);
  'lastAppliedStaleness': (number);
}
