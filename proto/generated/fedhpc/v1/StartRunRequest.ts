// Original file: proto/fedhpc/v1/fedhpc.proto


export interface StartRunRequest {
  'runJson'?: (string);
  'source'?: (string);
}

export interface StartRunRequest__Output {
  'runJson': (string);
  'source': (string);
}
