// Original file: proto/fedhpc/v1/fedhpc.proto


export interface EncryptedShare {
  'fromSite'?: (string);
  'toSite'?: (string);
  'nonce'?: (Buffer | Uint8Array | string);
  'ciphertext'?: (Buffer | Uint8Array | string);
}

export interface EncryptedShare__Output {
  'fromSite': (string);
  'toSite': (string);
  'nonce': (Buffer);
  'ciphertext': (Buffer);
}
