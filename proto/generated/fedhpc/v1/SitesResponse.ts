// Original file: proto/fedhpc/v1/fedhpc.proto

import type { SiteInfo as _fedhpc_v1_SiteInfo, SiteInfo__Output as _fedhpc_v1_SiteInfo__Output } from '../../fedhpc/v1/SiteInfo';

export interface SitesResponse {
  'sites'?: (_fedhpc_v1_SiteInfo)[];
}

export interface SitesResponse__Output {
  'sites': (_fedhpc_v1_SiteInfo__Output)[];
}
