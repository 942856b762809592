// Original file: proto/fedhpc/v1/fedhpc.proto

import type { SiteLogLine as _fedhpc_v1_SiteLogLine, SiteLogLine__Output as _fedhpc_v1_SiteLogLine__Output } from '../../fedhpc/v1/SiteLogLine';

export interface SiteLogsResponse {
  'siteId'?: (string);
  'lines'?: (_fedhpc_v1_SiteLogLine)[];
}

export interface SiteLogsResponse__Output {
  'siteId': (string);
  'lines': (_fedhpc_v1_SiteLogLine__Output)[];
}
