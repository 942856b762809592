// Original file: proto/fedhpc/v1/fedhpc.proto


export interface SiteLogsRequest {
  'siteId'?: (string);
  'limit'?: (number);
}

export interface SiteLogsRequest__Output {
  'siteId': (string);
  'limit': (number);
}
