/**
 * Loads the fedhpc wire contract at run time and exposes its generated types. The only module
 * that touches proto-loader: coordinator and site agent both come here for the service definitions.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType } from './generated/fedhpc.js';
import type { UploadMessage, UploadMessage__Output } from './generated/fedhpc/v1/UploadMessage.js';
import type { UploadReply } from './generated/fedhpc/v1/UploadReply.js';
import { installFramePassThrough, uploadRequestCodec } from './upload-codec.js';
import { installReceivePool } from './receive-pool.js';

export type { ProtoGrpcType } from './generated/fedhpc.js';
// <generated-exports>
export type { Ack, Ack__Output } from './generated/fedhpc/v1/Ack.js';
export type { AdminServiceClient, AdminServiceHandlers, AdminServiceDefinition } from './generated/fedhpc/v1/AdminService.js';
export type { AggregatorServiceClient, AggregatorServiceHandlers, AggregatorServiceDefinition } from './generated/fedhpc/v1/AggregatorService.js';
export type { ApproveSiteRequest, ApproveSiteRequest__Output } from './generated/fedhpc/v1/ApproveSiteRequest.js';
export type { ApproveSiteResponse, ApproveSiteResponse__Output } from './generated/fedhpc/v1/ApproveSiteResponse.js';
export type { AttemptInfo, AttemptInfo__Output } from './generated/fedhpc/v1/AttemptInfo.js';
export type { CancelTask, CancelTask__Output } from './generated/fedhpc/v1/CancelTask.js';
export type { ConsistencyTask, ConsistencyTask__Output } from './generated/fedhpc/v1/ConsistencyTask.js';
export type { DeltaPartHash, DeltaPartHash__Output } from './generated/fedhpc/v1/DeltaPartHash.js';
export type { DownloadAdmission, DownloadAdmission__Output } from './generated/fedhpc/v1/DownloadAdmission.js';
export type { DownloadRequest, DownloadRequest__Output } from './generated/fedhpc/v1/DownloadRequest.js';
export type { Encoding, Encoding__Output } from './generated/fedhpc/v1/Encoding.js';
export type { EncryptedShare, EncryptedShare__Output } from './generated/fedhpc/v1/EncryptedShare.js';
export type { EvalReport, EvalReport__Output } from './generated/fedhpc/v1/EvalReport.js';
export type { EvalTask, EvalTask__Output } from './generated/fedhpc/v1/EvalTask.js';
export type { Event, Event__Output } from './generated/fedhpc/v1/Event.js';
export type { EventsRequest, EventsRequest__Output } from './generated/fedhpc/v1/EventsRequest.js';
export type { FinishedTask, FinishedTask__Output } from './generated/fedhpc/v1/FinishedTask.js';
export type { FoldedPart, FoldedPart__Output } from './generated/fedhpc/v1/FoldedPart.js';
export type { HaStandby, HaStandby__Output } from './generated/fedhpc/v1/HaStandby.js';
export type { HaStatus, HaStatus__Output } from './generated/fedhpc/v1/HaStatus.js';
export type { HeartbeatRequest, HeartbeatRequest__Output } from './generated/fedhpc/v1/HeartbeatRequest.js';
export type { HeartbeatResponse, HeartbeatResponse__Output } from './generated/fedhpc/v1/HeartbeatResponse.js';
export type { JoinRequest, JoinRequest__Output } from './generated/fedhpc/v1/JoinRequest.js';
export type { JoinResponse, JoinResponse__Output } from './generated/fedhpc/v1/JoinResponse.js';
export type { KeyAdvertisement, KeyAdvertisement__Output } from './generated/fedhpc/v1/KeyAdvertisement.js';
export type { KeysTask, KeysTask__Output } from './generated/fedhpc/v1/KeysTask.js';
export type { ModelChunk, ModelChunk__Output } from './generated/fedhpc/v1/ModelChunk.js';
export type { ModelRef, ModelRef__Output } from './generated/fedhpc/v1/ModelRef.js';
export type { NatsClusterHealth, NatsClusterHealth__Output } from './generated/fedhpc/v1/NatsClusterHealth.js';
export type { ParticipantInfo, ParticipantInfo__Output } from './generated/fedhpc/v1/ParticipantInfo.js';
export type { PhaseTiming, PhaseTiming__Output } from './generated/fedhpc/v1/PhaseTiming.js';
export type { RefusalCount, RefusalCount__Output } from './generated/fedhpc/v1/RefusalCount.js';
export type { RevealedShare, RevealedShare__Output } from './generated/fedhpc/v1/RevealedShare.js';
export type { RevokeSiteRequest, RevokeSiteRequest__Output } from './generated/fedhpc/v1/RevokeSiteRequest.js';
export type { RevokeSiteResponse, RevokeSiteResponse__Output } from './generated/fedhpc/v1/RevokeSiteResponse.js';
export type { RoundDetail, RoundDetail__Output } from './generated/fedhpc/v1/RoundDetail.js';
export type { RoundInfo, RoundInfo__Output } from './generated/fedhpc/v1/RoundInfo.js';
export type { RoundReceipt, RoundReceipt__Output } from './generated/fedhpc/v1/RoundReceipt.js';
export type { RoundRequest, RoundRequest__Output } from './generated/fedhpc/v1/RoundRequest.js';
export type { RoundUsage, RoundUsage__Output } from './generated/fedhpc/v1/RoundUsage.js';
export type { RoundsRequest, RoundsRequest__Output } from './generated/fedhpc/v1/RoundsRequest.js';
export type { RoundsResponse, RoundsResponse__Output } from './generated/fedhpc/v1/RoundsResponse.js';
export type { RunControlRequest, RunControlRequest__Output } from './generated/fedhpc/v1/RunControlRequest.js';
export type { RunControlResponse, RunControlResponse__Output } from './generated/fedhpc/v1/RunControlResponse.js';
export type { SecAggParams, SecAggParams__Output } from './generated/fedhpc/v1/SecAggParams.js';
export type { ShardAdmit, ShardAdmit__Output } from './generated/fedhpc/v1/ShardAdmit.js';
export type { ShardAdmitDownload, ShardAdmitDownload__Output } from './generated/fedhpc/v1/ShardAdmitDownload.js';
export type { ShardAggregate, ShardAggregate__Output } from './generated/fedhpc/v1/ShardAggregate.js';
export type { ShardAggregated, ShardAggregated__Output } from './generated/fedhpc/v1/ShardAggregated.js';
export type { ShardAssignment, ShardAssignment__Output } from './generated/fedhpc/v1/ShardAssignment.js';
export type { ShardCancel, ShardCancel__Output } from './generated/fedhpc/v1/ShardCancel.js';
export type { ShardDrop, ShardDrop__Output } from './generated/fedhpc/v1/ShardDrop.js';
export type { ShardDroppedPair, ShardDroppedPair__Output } from './generated/fedhpc/v1/ShardDroppedPair.js';
export type { ShardHello, ShardHello__Output } from './generated/fedhpc/v1/ShardHello.js';
export type { ShardInput, ShardInput__Output } from './generated/fedhpc/v1/ShardInput.js';
export type { ShardInstruction, ShardInstruction__Output } from './generated/fedhpc/v1/ShardInstruction.js';
export type { ShardReadiness, ShardReadiness__Output } from './generated/fedhpc/v1/ShardReadiness.js';
export type { ShardReceived, ShardReceived__Output } from './generated/fedhpc/v1/ShardReceived.js';
export type { ShardReport, ShardReport__Output } from './generated/fedhpc/v1/ShardReport.js';
export type { ShardSent, ShardSent__Output } from './generated/fedhpc/v1/ShardSent.js';
export type { ShardStatus, ShardStatus__Output } from './generated/fedhpc/v1/ShardStatus.js';
export type { ShardUnmask, ShardUnmask__Output } from './generated/fedhpc/v1/ShardUnmask.js';
export type { SharesSubmission, SharesSubmission__Output } from './generated/fedhpc/v1/SharesSubmission.js';
export type { SharesTask, SharesTask__Output } from './generated/fedhpc/v1/SharesTask.js';
export type { SiteEval, SiteEval__Output } from './generated/fedhpc/v1/SiteEval.js';
export type { SiteInfo, SiteInfo__Output } from './generated/fedhpc/v1/SiteInfo.js';
export type { SiteLogLine, SiteLogLine__Output } from './generated/fedhpc/v1/SiteLogLine.js';
export type { SiteLogsRequest, SiteLogsRequest__Output } from './generated/fedhpc/v1/SiteLogsRequest.js';
export type { SiteLogsResponse, SiteLogsResponse__Output } from './generated/fedhpc/v1/SiteLogsResponse.js';
export type { SiteServiceClient, SiteServiceHandlers, SiteServiceDefinition } from './generated/fedhpc/v1/SiteService.js';
export type { SitesRequest, SitesRequest__Output } from './generated/fedhpc/v1/SitesRequest.js';
export type { SitesResponse, SitesResponse__Output } from './generated/fedhpc/v1/SitesResponse.js';
export type { StagedFile, StagedFile__Output } from './generated/fedhpc/v1/StagedFile.js';
export type { StagedTensor, StagedTensor__Output } from './generated/fedhpc/v1/StagedTensor.js';
export type { StartRunRequest, StartRunRequest__Output } from './generated/fedhpc/v1/StartRunRequest.js';
export type { StatusRequest, StatusRequest__Output } from './generated/fedhpc/v1/StatusRequest.js';
export type { StatusResponse, StatusResponse__Output } from './generated/fedhpc/v1/StatusResponse.js';
export type { SurvivorSignature, SurvivorSignature__Output } from './generated/fedhpc/v1/SurvivorSignature.js';
export type { Task, Task__Output } from './generated/fedhpc/v1/Task.js';
export type { TasksRequest, TasksRequest__Output } from './generated/fedhpc/v1/TasksRequest.js';
export type { TensorDigest, TensorDigest__Output } from './generated/fedhpc/v1/TensorDigest.js';
export type { TensorSpec, TensorSpec__Output } from './generated/fedhpc/v1/TensorSpec.js';
export type { TrainTask, TrainTask__Output } from './generated/fedhpc/v1/TrainTask.js';
export type { TrainingFailure, TrainingFailure__Output } from './generated/fedhpc/v1/TrainingFailure.js';
export type { TransferPart, TransferPart__Output } from './generated/fedhpc/v1/TransferPart.js';
export type { TransferProgress, TransferProgress__Output } from './generated/fedhpc/v1/TransferProgress.js';
export type { UnmaskResponse, UnmaskResponse__Output } from './generated/fedhpc/v1/UnmaskResponse.js';
export type { UnmaskTask, UnmaskTask__Output } from './generated/fedhpc/v1/UnmaskTask.js';
export type { UploadAccepted, UploadAccepted__Output } from './generated/fedhpc/v1/UploadAccepted.js';
export type { UploadAck, UploadAck__Output } from './generated/fedhpc/v1/UploadAck.js';
export type { UploadAdmission, UploadAdmission__Output } from './generated/fedhpc/v1/UploadAdmission.js';
export type { UploadChunk, UploadChunk__Output } from './generated/fedhpc/v1/UploadChunk.js';
export type { UploadHeader, UploadHeader__Output } from './generated/fedhpc/v1/UploadHeader.js';
export type { UploadMessage, UploadMessage__Output } from './generated/fedhpc/v1/UploadMessage.js';
export type { UploadQueued, UploadQueued__Output } from './generated/fedhpc/v1/UploadQueued.js';
export type { UploadReply, UploadReply__Output } from './generated/fedhpc/v1/UploadReply.js';
export type { UploadResend, UploadResend__Output } from './generated/fedhpc/v1/UploadResend.js';
export type { UploadResult, UploadResult__Output } from './generated/fedhpc/v1/UploadResult.js';
export type { UploadTrailer, UploadTrailer__Output } from './generated/fedhpc/v1/UploadTrailer.js';
export type { UsageRequest, UsageRequest__Output } from './generated/fedhpc/v1/UsageRequest.js';
export type { UsageResponse, UsageResponse__Output } from './generated/fedhpc/v1/UsageResponse.js';
export type { UsageRound, UsageRound__Output } from './generated/fedhpc/v1/UsageRound.js';
export type { UsageRow, UsageRow__Output } from './generated/fedhpc/v1/UsageRow.js';
// </generated-exports>

/** Protocol version spoken by this build; `Join` refuses agents that speak another. */
export const PROTOCOL_VERSION = 14;

/** Largest message either side accepts: one 4 MiB chunk plus framing. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

const PROTO_PATH = fileURLToPath(new URL('./fedhpc/v1/fedhpc.proto', import.meta.url));
/** The contract's file name as protoc and reflection clients know it: its path under `proto/`. */
export const PROTO_FILE_NAME = 'fedhpc/v1/fedhpc.proto';

let cachedDefinition: protoLoader.PackageDefinition | undefined;
let cached: ProtoGrpcType | undefined;

/** The raw package definition (for server reflection). */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  cachedDefinition ??= renameFileDescriptors(
    protoLoader.loadSync(PROTO_PATH, {
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
    'fedhpc_v1.proto',
    PROTO_FILE_NAME,
  );
  return cachedDefinition;
}

/**
 * protobufjs names the descriptor of a package it parsed after the package (`fedhpc_v1.proto`),
 * not after the file, so reflection served the contract under a name no client could ask for by
 * its path. Rewrites field 1 (`name`) of each serialized FileDescriptorProto named `from`: it is
 * the first field protobufjs writes, a tag byte 0x0a and a varint length.
 */
function renameFileDescriptors(def: protoLoader.PackageDefinition, from: string, to: string): protoLoader.PackageDefinition {
  const named = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(from)]), Buffer.from(from)]);
  const renamed = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(to)]), Buffer.from(to)]);
  for (const entry of Object.values(def)) {
    const files = (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos;
    if (!Array.isArray(files)) continue;
    // Every definition shares one array: each descriptor is rewritten once.
    for (const [i, file] of files.entries()) {
      if (file.subarray(0, named.length).equals(named)) files[i] = Buffer.concat([renamed, file.subarray(named.length)]);
    }
  }
  return def;
}

/**
 * The loaded package `fedhpc.v1`, with bytes as Buffers and 64-bit integers as strings.
 * `SiteService.Upload` reads and writes chunk messages with `proto/upload-codec.ts` (same bytes on
 * the wire; a sent chunk's data is copied once instead of twice) and every other message as generated.
 */
export function loadProto(): ProtoGrpcType {
  cached ??= grpc.loadPackageDefinition(withUploadCodec(loadPackageDefinition())) as unknown as ProtoGrpcType;
  return cached;
}

/**
 * `def` with the hand-written chunk codec on `SiteService.Upload`'s requests, for clients and
 * servers alike; a copy, since grpc-js takes a method's codec when it builds the client class.
 */
function withUploadCodec(def: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const service = def['fedhpc.v1.SiteService'] as protoLoader.ServiceDefinition;
  const upload = service.Upload as protoLoader.MethodDefinition<UploadMessage, UploadReply, UploadMessage__Output>;
  const codec = uploadRequestCodec({ serialize: upload.requestSerialize, deserialize: upload.requestDeserialize }, installFramePassThrough());
  installReceivePool();
  return {
    ...def,
    'fedhpc.v1.SiteService': { ...service, Upload: { ...upload, requestSerialize: codec.serialize, requestDeserialize: codec.deserialize } },
  };
}

export { chunkBufferCounts, chunkDataBuffer, installFramePassThrough, recycleChunkData } from './upload-codec.js';
export { installReceivePool, recycleReceived } from './receive-pool.js';

/** Path of the .proto file, for reflection and tooling. */
export const protoPath = PROTO_PATH;
