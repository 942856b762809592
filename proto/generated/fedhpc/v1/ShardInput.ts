// Original file: proto/fedhpc/v1/fedhpc.proto


export interface ShardInput {
  'siteId'?: (string);
  'weight'?: (number | string);
  'path'?: (string);
  'encoding'?: (string);
  'onShard'?: (boolean);
}

export interface ShardInput__Output {
  'siteId': (string);
  'weight': (number);
  'path': (string);
  'encoding': (string);
  'onShard': (boolean);
}
