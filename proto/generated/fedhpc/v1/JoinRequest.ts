// Original file: proto/fedhpc/v1/fedhpc.proto


export interface JoinRequest {
  'protocolVersion'?: (number);
  'siteId'?: (string);
  'agentVersion'?: (string);
  'cachedModels'?: (string)[];
}

export interface JoinRequest__Output {
  'protocolVersion': (number);
  'siteId': (string);
  'agentVersion': (string);
  'cachedModels': (string)[];
}
