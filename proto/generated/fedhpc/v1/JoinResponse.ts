// Original file: proto/fedhpc/v1/fedhpc.proto


export interface JoinResponse {
  'federation'?: (string);
  'siteId'?: (string);
  'protocolVersion'?: (number);
  'heartbeatIntervalMs'?: (number);
  'coordinatorVersion'?: (string);
}

export interface JoinResponse__Output {
  'federation': (string);
  'siteId': (string);
  'protocolVersion': (number);
  'heartbeatIntervalMs': (number);
  'coordinatorVersion': (string);
}
