// Original file: proto/fedhpc/v1/fedhpc.proto


export interface Ack {
}

export interface Ack__Output {
}
