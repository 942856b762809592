// Original file: proto/fedhpc/v1/fedhpc.proto


export interface SecAggParams {
  'threshold'?: (number);
  'quantBits'?: (number);
  'modulusBits'?: (number);
  'clip'?: (number | string);
  'maxWeight'?: (number | string);
  'graphSeed'?: (Buffer | Uint8Array | string);
  'degree'?: (number);
  'roster'?: (string)[];
  'weighting'?: (string);
}

export interface SecAggParams__Output {
  'threshold': (number);
  'quantBits': (number);
  'modulusBits': (number);
  'clip': (number);
  'maxWeight': (number);
  'graphSeed': (Buffer);
  'degree': (number);
  'roster': (string)[];
  'weighting': (string);
}
