// Original file: proto/fedhpc/v1/fedhpc.proto


export interface RevokeSiteRequest {
  'siteId'?: (string);
  'reason'?: (string);
}

export interface RevokeSiteRequest__Output {
  'siteId': (string);
  'reason': (string);
}
