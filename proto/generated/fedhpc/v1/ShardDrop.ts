// Original file: proto/fedhpc/v1/fedhpc.proto


export interface ShardDrop {
  'siteId'?: (string);
  'reason'?: (string);
}

export interface ShardDrop__Output {
  'siteId': (string);
  'reason': (string);
}
