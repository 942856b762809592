// Original file: proto/fedhpc/v1/fedhpc.proto


export interface ApproveSiteRequest {
  'siteId'?: (string);
  'certificatePem'?: (string);
}

export interface ApproveSiteRequest__Output {
  'siteId': (string);
  'certificatePem': (string);
}
