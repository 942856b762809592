// Original file: proto/fedhpc/v1/fedhpc.proto


export interface StatusRequest {
}

export interface StatusRequest__Output {
}
