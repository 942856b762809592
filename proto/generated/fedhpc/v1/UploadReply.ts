// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UploadAccepted as _fedhpc_v1_UploadAccepted, UploadAccepted__Output as _fedhpc_v1_UploadAccepted__Output } from '../../fedhpc/v1/UploadAccepted';
import type { UploadAck as _fedhpc_v1_UploadAck, UploadAck__Output as _fedhpc_v1_UploadAck__Output } from '../../fedhpc/v1/UploadAck';
import type { UploadResend as _fedhpc_v1_UploadResend, UploadResend__Output as _fedhpc_v1_UploadResend__Output } from '../../fedhpc/v1/UploadResend';
import type { UploadResult as _fedhpc_v1_UploadResult, UploadResult__Output as _fedhpc_v1_UploadResult__Output } from '../../fedhpc/v1/UploadResult';
import type { UploadQueued as _fedhpc_v1_UploadQueued, UploadQueued__Output as _fedhpc_v1_UploadQueued__Output } from '../../fedhpc/v1/UploadQueued';

export interface UploadReply {
  'accepted'?: (_fedhpc_v1_UploadAccepted | null);
  'ack'?: (_fedhpc_v1_UploadAck | null);
  'resend'?: (_fedhpc_v1_UploadResend | null);
  'result'?: (_fedhpc_v1_UploadResult | null);
  'queued'?: (_fedhpc_v1_UploadQueued | null);
  'kind'?: "accepted"|"ack"|"resend"|"result"|"queued";
}

export interface UploadReply__Output {
  'accepted'?: (_fedhpc_v1_UploadAccepted__Output | null);
  'ack'?: (_fedhpc_v1_UploadAck__Output | null);
  'resend'?: (_fedhpc_v1_UploadResend__Output | null);
  'result'?: (_fedhpc_v1_UploadResult__Output | null);
  'queued'?: (_fedhpc_v1_UploadQueued__Output | null);
  'kind'?: "accepted"|"ack"|"resend"|"result"|"queued";
}
