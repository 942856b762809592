// Original file: proto/fedhpc/v1/fedhpc.proto


export interface SitesRequest {
}

export interface SitesRequest__Output {
}
