import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Ack as _fedhpc_v1_Ack, Ack__Output as _fedhpc_v1_Ack__Output } from './fedhpc/v1/Ack';
import type { AdminServiceClient as _fedhpc_v1_AdminServiceClient, AdminServiceDefinition as _fedhpc_v1_AdminServiceDefinition } from './fedhpc/v1/AdminService';
import type { AggregatorServiceClient as _fedhpc_v1_AggregatorServiceClient, AggregatorServiceDefinition as _fedhpc_v1_AggregatorServiceDefinition } from './fedhpc/v1/AggregatorService';
import type { ApproveSiteRequest as _fedhpc_v1_ApproveSiteRequest, ApproveSiteRequest__Output as _fedhpc_v1_ApproveSiteRequest__Output } from './fedhpc/v1/ApproveSiteRequest';
import type { ApproveSiteResponse as _fedhpc_v1_ApproveSiteResponse, ApproveSiteResponse__Output as _fedhpc_v1_ApproveSiteResponse__Output } from './fedhpc/v1/ApproveSiteResponse';
import type { AttemptInfo as _fedhpc_v1_AttemptInfo, AttemptInfo__Output as _fedhpc_v1_AttemptInfo__Output } from './fedhpc/v1/AttemptInfo';
import type { CancelTask as _fedhpc_v1_CancelTask, CancelTask__Output as _fedhpc_v1_CancelTask__Output } from './fedhpc/v1/CancelTask';
import type { ConsistencyTask as _fedhpc_v1_ConsistencyTask, ConsistencyTask__Output as _fedhpc_v1_ConsistencyTask__Output } from './fedhpc/v1/ConsistencyTask';
import type { DeltaPartHash as _fedhpc_v1_DeltaPartHash, DeltaPartHash__Output as _fedhpc_v1_DeltaPartHash__Output } from './fedhpc/v1/DeltaPartHash';
import type { DownloadAdmission as _fedhpc_v1_DownloadAdmission, DownloadAdmission__Output as _fedhpc_v1_DownloadAdmission__Output } from './fedhpc/v1/DownloadAdmission';
import type { DownloadRequest as _fedhpc_v1_DownloadRequest, DownloadRequest__Output as _fedhpc_v1_DownloadRequest__Output } from './fedhpc/v1/DownloadRequest';
import type { Encoding as _fedhpc_v1_Encoding, Encoding__Output as _fedhpc_v1_Encoding__Output } from './fedhpc/v1/Encoding';
import type { EncryptedShare as _fedhpc_v1_EncryptedShare, EncryptedShare__Output as _fedhpc_v1_EncryptedShare__Output } from './fedhpc/v1/EncryptedShare';
import type { EvalReport as _fedhpc_v1_EvalReport, EvalReport__Output as _fedhpc_v1_EvalReport__Output } from './fedhpc/v1/EvalReport';
import type { EvalTask as _fedhpc_v1_EvalTask, EvalTask__Output as _fedhpc_v1_EvalTask__Output } from './fedhpc/v1/EvalTask';
import type { Event as _fedhpc_v1_Event, Event__Output as _fedhpc_v1_Event__Output } from './fedhpc/v1/Event';
import type { EventsRequest as _fedhpc_v1_EventsRequest, EventsRequest__Output as _fedhpc_v1_EventsRequest__Output } from './fedhpc/v1/EventsRequest';
import type { FinishedTask as _fedhpc_v1_FinishedTask, FinishedTask__Output as _fedhpc_v1_FinishedTask__Output } from './fedhpc/v1/FinishedTask';
import type { FoldedPart as _fedhpc_v1_FoldedPart, FoldedPart__Output as _fedhpc_v1_FoldedPart__Output } from './fedhpc/v1/FoldedPart';
import type { HaStandby as _fedhpc_v1_HaStandby, HaStandby__Output as _fedhpc_v1_HaStandby__Output } from './fedhpc/v1/HaStandby';
import type { HaStatus as _fedhpc_v1_HaStatus, HaStatus__Output as _fedhpc_v1_HaStatus__Output } from './fedhpc/v1/HaStatus';
import type { HeartbeatRequest as _fedhpc_v1_HeartbeatRequest, HeartbeatRequest__Output as _fedhpc_v1_HeartbeatRequest__Output } from './fedhpc/v1/HeartbeatRequest';
import type { HeartbeatResponse as _fedhpc_v1_HeartbeatResponse, HeartbeatResponse__Output as _fedhpc_v1_HeartbeatResponse__Output } from './fedhpc/v1/HeartbeatResponse';
import type { JoinRequest as _fedhpc_v1_JoinRequest, JoinRequest__Output as _fedhpc_v1_JoinRequest__Output } from './fedhpc/v1/JoinRequest';
import type { JoinResponse as _fedhpc_v1_JoinResponse, JoinResponse__Output as _fedhpc_v1_JoinResponse__Output } from './fedhpc/v1/JoinResponse';
import type { KeyAdvertisement as _fedhpc_v1_KeyAdvertisement, KeyAdvertisement__Output as _fedhpc_v1_KeyAdvertisement__Output } from './fedhpc/v1/KeyAdvertisement';
import type { KeysTask as _fedhpc_v1_KeysTask, KeysTask__Output as _fedhpc_v1_KeysTask__Output } from './fedhpc/v1/KeysTask';
import type { ModelChunk as _fedhpc_v1_ModelChunk, ModelChunk__Output as _fedhpc_v1_ModelChunk__Output } from './fedhpc/v1/ModelChunk';
import type { ModelRef as _fedhpc_v1_ModelRef, ModelRef__Output as _fedhpc_v1_ModelRef__Output } from './fedhpc/v1/ModelRef';
import type { NatsClusterHealth as _fedhpc_v1_NatsClusterHealth, NatsClusterHealth__Output as _fedhpc_v1_NatsClusterHealth__Output } from './fedhpc/v1/NatsClusterHealth';
import type { ParticipantInfo as _fedhpc_v1_ParticipantInfo, ParticipantInfo__Output as _fedhpc_v1_ParticipantInfo__Output } from './fedhpc/v1/ParticipantInfo';
import type { PhaseTiming as _fedhpc_v1_PhaseTiming, PhaseTiming__Output as _fedhpc_v1_PhaseTiming__Output } from './fedhpc/v1/PhaseTiming';
import type { RefusalCount as _fedhpc_v1_RefusalCount, RefusalCount__Output as _fedhpc_v1_RefusalCount__Output } from './fedhpc/v1/RefusalCount';
import type { RevealedShare as _fedhpc_v1_RevealedShare, RevealedShare__Output as _fedhpc_v1_RevealedShare__Output } from './fedhpc/v1/RevealedShare';
import type { RevokeSiteRequest as _fedhpc_v1_RevokeSiteRequest, RevokeSiteRequest__Output as _fedhpc_v1_RevokeSiteRequest__Output } from './fedhpc/v1/RevokeSiteRequest';
import type { RevokeSiteResponse as _fedhpc_v1_RevokeSiteResponse, RevokeSiteResponse__Output as _fedhpc_v1_RevokeSiteResponse__Output } from './fedhpc/v1/RevokeSiteResponse';
import type { RoundDetail as _fedhpc_v1_RoundDetail, RoundDetail__Output as _fedhpc_v1_RoundDetail__Output } from './fedhpc/v1/RoundDetail';
import type { RoundInfo as _fedhpc_v1_RoundInfo, RoundInfo__Output as _fedhpc_v1_RoundInfo__Output } from './fedhpc/v1/RoundInfo';
import type { RoundReceipt as _fedhpc_v1_RoundReceipt, RoundReceipt__Output as _fedhpc_v1_RoundReceipt__Output } from './fedhpc/v1/RoundReceipt';
import type { RoundRequest as _fedhpc_v1_RoundRequest, RoundRequest__Output as _fedhpc_v1_RoundRequest__Output } from './fedhpc/v1/RoundRequest';
import type { RoundUsage as _fedhpc_v1_RoundUsage, RoundUsage__Output as _fedhpc_v1_RoundUsage__Output } from './fedhpc/v1/RoundUsage';
import type { RoundsRequest as _fedhpc_v1_RoundsRequest, RoundsRequest__Output as _fedhpc_v1_RoundsRequest__Output } from './fedhpc/v1/RoundsRequest';
import type { RoundsResponse as _fedhpc_v1_RoundsResponse, RoundsResponse__Output as _fedhpc_v1_RoundsResponse__Output } from './fedhpc/v1/RoundsResponse';
import type { RunControlRequest as _fedhpc_v1_RunControlRequest, RunControlRequest__Output as _fedhpc_v1_RunControlRequest__Output } from './fedhpc/v1/RunControlRequest';
import type { RunControlResponse as _fedhpc_v1_RunControlResponse, RunControlResponse__Output as _fedhpc_v1_RunControlResponse__Output } from './fedhpc/v1/RunControlResponse';
import type { SecAggParams as _fedhpc_v1_SecAggParams, SecAggParams__Output as _fedhpc_v1_SecAggParams__Output } from './fedhpc/v1/SecAggParams';
import type { ShardAdmit as _fedhpc_v1_ShardAdmit, ShardAdmit__Output as _fedhpc_v1_ShardAdmit__Output } from './fedhpc/v1/ShardAdmit';
import type { ShardAdmitDownload as _fedhpc_v1_ShardAdmitDownload, ShardAdmitDownload__Output as _fedhpc_v1_ShardAdmitDownload__Output } from './fedhpc/v1/ShardAdmitDownload';
import type { ShardAggregate as _fedhpc_v1_ShardAggregate, ShardAggregate__Output as _fedhpc_v1_ShardAggregate__Output } from './fedhpc/v1/ShardAggregate';
import type { ShardAggregated as _fedhpc_v1_ShardAggregated, ShardAggregated__Output as _fedhpc_v1_ShardAggregated__Output } from './fedhpc/v1/ShardAggregated';
import type { ShardAssignment as _fedhpc_v1_ShardAssignment, ShardAssignment__Output as _fedhpc_v1_ShardAssignment__Output } from './fedhpc/v1/ShardAssignment';
import type { ShardCancel as _fedhpc_v1_ShardCancel, ShardCancel__Output as _fedhpc_v1_ShardCancel__Output } from './fedhpc/v1/ShardCancel';
import type { ShardDrop as _fedhpc_v1_ShardDrop, ShardDrop__Output as _fedhpc_v1_ShardDrop__Output } from './fedhpc/v1/ShardDrop';
import type { ShardDroppedPair as _fedhpc_v1_ShardDroppedPair, ShardDroppedPair__Output as _fedhpc_v1_ShardDroppedPair__Output } from './fedhpc/v1/ShardDroppedPair';
import type { ShardHello as _fedhpc_v1_ShardHello, ShardHello__Output as _fedhpc_v1_ShardHello__Output } from './fedhpc/v1/ShardHello';
import type { ShardInput as _fedhpc_v1_ShardInput, ShardInput__Output as _fedhpc_v1_ShardInput__Output } from './fedhpc/v1/ShardInput';
import type { ShardInstruction as _fedhpc_v1_ShardInstruction, ShardInstruction__Output as _fedhpc_v1_ShardInstruction__Output } from './fedhpc/v1/ShardInstruction';
import type { ShardReadiness as _fedhpc_v1_ShardReadiness, ShardReadiness__Output as _fedhpc_v1_ShardReadiness__Output } from './fedhpc/v1/ShardReadiness';
import type { ShardReceived as _fedhpc_v1_ShardReceived, ShardReceived__Output as _fedhpc_v1_ShardReceived__Output } from './fedhpc/v1/ShardReceived';
import type { ShardReport as _fedhpc_v1_ShardReport, ShardReport__Output as _fedhpc_v1_ShardReport__Output } from './fedhpc/v1/ShardReport';
import type { ShardSent as _fedhpc_v1_ShardSent, ShardSent__Output as _fedhpc_v1_ShardSent__Output } from './fedhpc/v1/ShardSent';
import type { ShardStatus as _fedhpc_v1_ShardStatus, ShardStatus__Output as _fedhpc_v1_ShardStatus__Output } from './fedhpc/v1/ShardStatus';
import type { ShardUnmask as _fedhpc_v1_ShardUnmask, ShardUnmask__Output as _fedhpc_v1_ShardUnmask__Output } from './fedhpc/v1/ShardUnmask';
import type { SharesSubmission as _fedhpc_v1_SharesSubmission, SharesSubmission__Output as _fedhpc_v1_SharesSubmission__Output } from './fedhpc/v1/SharesSubmission';
import type { SharesTask as _fedhpc_v1_SharesTask, SharesTask__Output as _fedhpc_v1_SharesTask__Output } from './fedhpc/v1/SharesTask';
import type { SiteEval as _fedhpc_v1_SiteEval, SiteEval__Output as _fedhpc_v1_SiteEval__Output } from './fedhpc/v1/SiteEval';
import type { SiteInfo as _fedhpc_v1_SiteInfo, SiteInfo__Output as _fedhpc_v1_SiteInfo__Output } from './fedhpc/v1/SiteInfo';
import type { SiteLogLine as _fedhpc_v1_SiteLogLine, SiteLogLine__Output as _fedhpc_v1_SiteLogLine__Output } from './fedhpc/v1/SiteLogLine';
import type { SiteLogsRequest as _fedhpc_v1_SiteLogsRequest, SiteLogsRequest__Output as _fedhpc_v1_SiteLogsRequest__Output } from './fedhpc/v1/SiteLogsRequest';
import type { SiteLogsResponse as _fedhpc_v1_SiteLogsResponse, SiteLogsResponse__Output as _fedhpc_v1_SiteLogsResponse__Output } from './fedhpc/v1/SiteLogsResponse';
import type { SiteServiceClient as _fedhpc_v1_SiteServiceClient, SiteServiceDefinition as _fedhpc_v1_SiteServiceDefinition } from './fedhpc/v1/SiteService';
import type { SitesRequest as _fedhpc_v1_SitesRequest, SitesRequest__Output as _fedhpc_v1_SitesRequest__Output } from './fedhpc/v1/SitesRequest';
import type { SitesResponse as _fedhpc_v1_SitesResponse, SitesResponse__Output as _fedhpc_v1_SitesResponse__Output } from './fedhpc/v1/SitesResponse';
import type { StagedFile as _fedhpc_v1_StagedFile, StagedFile__Output as _fedhpc_v1_StagedFile__Output } from './fedhpc/v1/StagedFile';
import type { StagedTensor as _fedhpc_v1_StagedTensor, StagedTensor__Output as _fedhpc_v1_StagedTensor__Output } from './fedhpc/v1/StagedTensor';
import type { StartRunRequest as _fedhpc_v1_StartRunRequest, StartRunRequest__Output as _fedhpc_v1_StartRunRequest__Output } from './fedhpc/v1/StartRunRequest';
import type { StatusRequest as _fedhpc_v1_StatusRequest, StatusRequest__Output as _fedhpc_v1_StatusRequest__Output } from './fedhpc/v1/StatusRequest';
import type { StatusResponse as _fedhpc_v1_StatusResponse, StatusResponse__Output as _fedhpc_v1_StatusResponse__Output } from './fedhpc/v1/StatusResponse';
import type { SurvivorSignature as _fedhpc_v1_SurvivorSignature, SurvivorSignature__Output as _fedhpc_v1_SurvivorSignature__Output } from './fedhpc/v1/SurvivorSignature';
import type { Task as _fedhpc_v1_Task, Task__Output as _fedhpc_v1_Task__Output } from './fedhpc/v1/Task';
import type { TasksRequest as _fedhpc_v1_TasksRequest, TasksRequest__Output as _fedhpc_v1_TasksRequest__Output } from './fedhpc/v1/TasksRequest';
import type { TensorDigest as _fedhpc_v1_TensorDigest, TensorDigest__Output as _fedhpc_v1_TensorDigest__Output } from './fedhpc/v1/TensorDigest';
import type { TensorSpec as _fedhpc_v1_TensorSpec, TensorSpec__Output as _fedhpc_v1_TensorSpec__Output } from './fedhpc/v1/TensorSpec';
import type { TrainTask as _fedhpc_v1_TrainTask, TrainTask__Output as _fedhpc_v1_TrainTask__Output } from './fedhpc/v1/TrainTask';
import type { TrainingFailure as _fedhpc_v1_TrainingFailure, TrainingFailure__Output as _fedhpc_v1_TrainingFailure__Output } from './fedhpc/v1/TrainingFailure';
import type { TransferPart as _fedhpc_v1_TransferPart, TransferPart__Output as _fedhpc_v1_TransferPart__Output } from './fedhpc/v1/TransferPart';
import type { TransferProgress as _fedhpc_v1_TransferProgress, TransferProgress__Output as _fedhpc_v1_TransferProgress__Output } from './fedhpc/v1/TransferProgress';
import type { UnmaskResponse as _fedhpc_v1_UnmaskResponse, UnmaskResponse__Output as _fedhpc_v1_UnmaskResponse__Output } from './fedhpc/v1/UnmaskResponse';
import type { UnmaskTask as _fedhpc_v1_UnmaskTask, UnmaskTask__Output as _fedhpc_v1_UnmaskTask__Output } from './fedhpc/v1/UnmaskTask';
import type { UploadAccepted as _fedhpc_v1_UploadAccepted, UploadAccepted__Output as _fedhpc_v1_UploadAccepted__Output } from './fedhpc/v1/UploadAccepted';
import type { UploadAck as _fedhpc_v1_UploadAck, UploadAck__Output as _fedhpc_v1_UploadAck__Output } from './fedhpc/v1/UploadAck';
import type { UploadAdmission as _fedhpc_v1_UploadAdmission, UploadAdmission__Output as _fedhpc_v1_UploadAdmission__Output } from './fedhpc/v1/UploadAdmission';
import type { UploadChunk as _fedhpc_v1_UploadChunk, UploadChunk__Output as _fedhpc_v1_UploadChunk__Output } from './fedhpc/v1/UploadChunk';
import type { UploadHeader as _fedhpc_v1_UploadHeader, UploadHeader__Output as _fedhpc_v1_UploadHeader__Output } from './fedhpc/v1/UploadHeader';
import type { UploadMessage as _fedhpc_v1_UploadMessage, UploadMessage__Output as _fedhpc_v1_UploadMessage__Output } from './fedhpc/v1/UploadMessage';
import type { UploadQueued as _fedhpc_v1_UploadQueued, UploadQueued__Output as _fedhpc_v1_UploadQueued__Output } from './fedhpc/v1/UploadQueued';
import type { UploadReply as _fedhpc_v1_UploadReply, UploadReply__Output as _fedhpc_v1_UploadReply__Output } from './fedhpc/v1/UploadReply';
import type { UploadResend as _fedhpc_v1_UploadResend, UploadResend__Output as _fedhpc_v1_UploadResend__Output } from './fedhpc/v1/UploadResend';
import type { UploadResult as _fedhpc_v1_UploadResult, UploadResult__Output as _fedhpc_v1_UploadResult__Output } from './fedhpc/v1/UploadResult';
import type { UploadTrailer as _fedhpc_v1_UploadTrailer, UploadTrailer__Output as _fedhpc_v1_UploadTrailer__Output } from './fedhpc/v1/UploadTrailer';
import type { UsageRequest as _fedhpc_v1_UsageRequest, UsageRequest__Output as _fedhpc_v1_UsageRequest__Output } from './fedhpc/v1/UsageRequest';
import type { UsageResponse as _fedhpc_v1_UsageResponse, UsageResponse__Output as _fedhpc_v1_UsageResponse__Output } from './fedhpc/v1/UsageResponse';
import type { UsageRound as _fedhpc_v1_UsageRound, UsageRound__Output as _fedhpc_v1_UsageRound__Output } from './fedhpc/v1/UsageRound';
import type { UsageRow as _fedhpc_v1_UsageRow, UsageRow__Output as _fedhpc_v1_UsageRow__Output } from './fedhpc/v1/UsageRow';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  fedhpc: {
    v1: {
      Ack: MessageTypeDefinition<_fedhpc_v1_Ack, _fedhpc_v1_Ack__Output>
      AdminService: SubtypeConstructor<typeof grpc.Client, _fedhpc_v1_AdminServiceClient> & { service: _fedhpc_v1_AdminServiceDefinition }
      AggregatorService: SubtypeConstructor<typeof grpc.Client, _fedhpc_v1_AggregatorServiceClient> & { service: _fedhpc_v1_AggregatorServiceDefinition }
      ApproveSiteRequest: MessageTypeDefinition<_fedhpc_v1_ApproveSiteRequest, _fedhpc_v1_ApproveSiteRequest__Output>
      ApproveSiteResponse: MessageTypeDefinition<_fedhpc_v1_ApproveSiteResponse, _fedhpc_v1_ApproveSiteResponse__Output>
      AttemptInfo: MessageTypeDefinition<_fedhpc_v1_AttemptInfo, _fedhpc_v1_AttemptInfo__Output>
      CancelTask: MessageTypeDefinition<_fedhpc_v1_CancelTask, _fedhpc_v1_CancelTask__Output>
      ConsistencyTask: MessageTypeDefinition<_fedhpc_v1_ConsistencyTask, _fedhpc_v1_ConsistencyTask__Output>
      DeltaPartHash: MessageTypeDefinition<_fedhpc_v1_DeltaPartHash, _fedhpc_v1_DeltaPartHash__Output>
      DownloadAdmission: MessageTypeDefinition<_fedhpc_v1_DownloadAdmission, _fedhpc_v1_DownloadAdmission__Output>
      DownloadRequest: MessageTypeDefinition<_fedhpc_v1_DownloadRequest, _fedhpc_v1_DownloadRequest__Output>
      Encoding: MessageTypeDefinition<_fedhpc_v1_Encoding, _fedhpc_v1_Encoding__Output>
      EncryptedShare: MessageTypeDefinition<_fedhpc_v1_EncryptedShare, _fedhpc_v1_EncryptedShare__Output>
      EvalReport: MessageTypeDefinition<_fedhpc_v1_EvalReport, _fedhpc_v1_EvalReport__Output>
      EvalTask: MessageTypeDefinition<_fedhpc_v1_EvalTask, _fedhpc_v1_EvalTask__Output>
      Event: MessageTypeDefinition<_fedhpc_v1_Event, _fedhpc_v1_Event__Output>
      EventsRequest: MessageTypeDefinition<_fedhpc_v1_EventsRequest, _fedhpc_v1_EventsRequest__Output>
      FinishedTask: MessageTypeDefinition<_fedhpc_v1_FinishedTask, _fedhpc_v1_FinishedTask__Output>
      FoldedPart: MessageTypeDefinition<_fedhpc_v1_FoldedPart, _fedhpc_v1_FoldedPart__Output>
      HaStandby: MessageTypeDefinition<_fedhpc_v1_HaStandby, _fedhpc_v1_HaStandby__Output>
      HaStatus: MessageTypeDefinition<_fedhpc_v1_HaStatus, _fedhpc_v1_HaStatus__Output>
      HeartbeatRequest: MessageTypeDefinition<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatRequest__Output>
      HeartbeatResponse: MessageTypeDefinition<_fedhpc_v1_HeartbeatResponse, _fedhpc_v1_HeartbeatResponse__Output>
      JoinRequest: MessageTypeDefinition<_fedhpc_v1_JoinRequest, _fedhpc_v1_JoinRequest__Output>
      JoinResponse: MessageTypeDefinition<_fedhpc_v1_JoinResponse, _fedhpc_v1_JoinResponse__Output>
      KeyAdvertisement: MessageTypeDefinition<_fedhpc_v1_KeyAdvertisement, _fedhpc_v1_KeyAdvertisement__Output>
      KeysTask: MessageTypeDefinition<_fedhpc_v1_KeysTask, _fedhpc_v1_KeysTask__Output>
      ModelChunk: MessageTypeDefinition<_fedhpc_v1_ModelChunk, _fedhpc_v1_ModelChunk__Output>
      ModelRef: MessageTypeDefinition<_fedhpc_v1_ModelRef, _fedhpc_v1_ModelRef__Output>
      NatsClusterHealth: MessageTypeDefinition<_fedhpc_v1_NatsClusterHealth, _fedhpc_v1_NatsClusterHealth__Output>
      ParticipantInfo: MessageTypeDefinition<_fedhpc_v1_ParticipantInfo, _fedhpc_v1_ParticipantInfo__Output>
      PhaseTiming: MessageTypeDefinition<_fedhpc_v1_PhaseTiming, _fedhpc_v1_PhaseTiming__Output>
      RefusalCount: MessageTypeDefinition<_fedhpc_v1_RefusalCount, _fedhpc_v1_RefusalCount__Output>
      RevealedShare: MessageTypeDefinition<_fedhpc_v1_RevealedShare, _fedhpc_v1_RevealedShare__Output>
      RevokeSiteRequest: MessageTypeDefinition<_fedhpc_v1_RevokeSiteRequest, _fedhpc_v1_RevokeSiteRequest__Output>
      RevokeSiteResponse: MessageTypeDefinition<_fedhpc_v1_RevokeSiteResponse, _fedhpc_v1_RevokeSiteResponse__Output>
      RoundDetail: MessageTypeDefinition<_fedhpc_v1_RoundDetail, _fedhpc_v1_RoundDetail__Output>
      RoundInfo: MessageTypeDefinition<_fedhpc_v1_RoundInfo, _fedhpc_v1_RoundInfo__Output>
      RoundReceipt: MessageTypeDefinition<_fedhpc_v1_RoundReceipt, _fedhpc_v1_RoundReceipt__Output>
      RoundRequest: MessageTypeDefinition<_fedhpc_v1_RoundRequest, _fedhpc_v1_RoundRequest__Output>
      RoundUsage: MessageTypeDefinition<_fedhpc_v1_RoundUsage, _fedhpc_v1_RoundUsage__Output>
      RoundsRequest: MessageTypeDefinition<_fedhpc_v1_RoundsRequest, _fedhpc_v1_RoundsRequest__Output>
      RoundsResponse: MessageTypeDefinition<_fedhpc_v1_RoundsResponse, _fedhpc_v1_RoundsResponse__Output>
      RunControlRequest: MessageTypeDefinition<_fedhpc_v1_RunControlRequest, _fedhpc_v1_RunControlRequest__Output>
      RunControlResponse: MessageTypeDefinition<_fedhpc_v1_RunControlResponse, _fedhpc_v1_RunControlResponse__Output>
      SecAggParams: MessageTypeDefinition<_fedhpc_v1_SecAggParams, _fedhpc_v1_SecAggParams__Output>
      ShardAdmit: MessageTypeDefinition<_fedhpc_v1_ShardAdmit, _fedhpc_v1_ShardAdmit__Output>
      ShardAdmitDownload: MessageTypeDefinition<_fedhpc_v1_ShardAdmitDownload, _fedhpc_v1_ShardAdmitDownload__Output>
      ShardAggregate: MessageTypeDefinition<_fedhpc_v1_ShardAggregate, _fedhpc_v1_ShardAggregate__Output>
      ShardAggregated: MessageTypeDefinition<_fedhpc_v1_ShardAggregated, _fedhpc_v1_ShardAggregated__Output>
      ShardAssignment: MessageTypeDefinition<_fedhpc_v1_ShardAssignment, _fedhpc_v1_ShardAssignment__Output>
      ShardCancel: MessageTypeDefinition<_fedhpc_v1_ShardCancel, _fedhpc_v1_ShardCancel__Output>
      ShardDrop: MessageTypeDefinition<_fedhpc_v1_ShardDrop, _fedhpc_v1_ShardDrop__Output>
      ShardDroppedPair: MessageTypeDefinition<_fedhpc_v1_ShardDroppedPair, _fedhpc_v1_ShardDroppedPair__Output>
      ShardHello: MessageTypeDefinition<_fedhpc_v1_ShardHello, _fedhpc_v1_ShardHello__Output>
      ShardInput: MessageTypeDefinition<_fedhpc_v1_ShardInput, _fedhpc_v1_ShardInput__Output>
      ShardInstruction: MessageTypeDefinition<_fedhpc_v1_ShardInstruction, _fedhpc_v1_ShardInstruction__Output>
      ShardReadiness: MessageTypeDefinition<_fedhpc_v1_ShardReadiness, _fedhpc_v1_ShardReadiness__Output>
      ShardReceived: MessageTypeDefinition<_fedhpc_v1_ShardReceived, _fedhpc_v1_ShardReceived__Output>
      ShardReport: MessageTypeDefinition<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardReport__Output>
      ShardSent: MessageTypeDefinition<_fedhpc_v1_ShardSent, _fedhpc_v1_ShardSent__Output>
      ShardStatus: MessageTypeDefinition<_fedhpc_v1_ShardStatus, _fedhpc_v1_ShardStatus__Output>
      ShardUnmask: MessageTypeDefinition<_fedhpc_v1_ShardUnmask, _fedhpc_v1_ShardUnmask__Output>
      SharesSubmission: MessageTypeDefinition<_fedhpc_v1_SharesSubmission, _fedhpc_v1_SharesSubmission__Output>
      SharesTask: MessageTypeDefinition<_fedhpc_v1_SharesTask, _fedhpc_v1_SharesTask__Output>
      SiteEval: MessageTypeDefinition<_fedhpc_v1_SiteEval, _fedhpc_v1_SiteEval__Output>
      SiteInfo: MessageTypeDefinition<_fedhpc_v1_SiteInfo, _fedhpc_v1_SiteInfo__Output>
      SiteLogLine: MessageTypeDefinition<_fedhpc_v1_SiteLogLine, _fedhpc_v1_SiteLogLine__Output>
      SiteLogsRequest: MessageTypeDefinition<_fedhpc_v1_SiteLogsRequest, _fedhpc_v1_SiteLogsRequest__Output>
      SiteLogsResponse: MessageTypeDefinition<_fedhpc_v1_SiteLogsResponse, _fedhpc_v1_SiteLogsResponse__Output>
      SiteService: SubtypeConstructor<typeof grpc.Client, _fedhpc_v1_SiteServiceClient> & { service: _fedhpc_v1_SiteServiceDefinition }
      SitesRequest: MessageTypeDefinition<_fedhpc_v1_SitesRequest, _fedhpc_v1_SitesRequest__Output>
      SitesResponse: MessageTypeDefinition<_fedhpc_v1_SitesResponse, _fedhpc_v1_SitesResponse__Output>
      StagedFile: MessageTypeDefinition<_fedhpc_v1_StagedFile, _fedhpc_v1_StagedFile__Output>
      StagedTensor: MessageTypeDefinition<_fedhpc_v1_StagedTensor, _fedhpc_v1_StagedTensor__Output>
      StartRunRequest: MessageTypeDefinition<_fedhpc_v1_StartRunRequest, _fedhpc_v1_StartRunRequest__Output>
      StatusRequest: MessageTypeDefinition<_fedhpc_v1_StatusRequest, _fedhpc_v1_StatusRequest__Output>
      StatusResponse: MessageTypeDefinition<_fedhpc_v1_StatusResponse, _fedhpc_v1_StatusResponse__Output>
      SurvivorSignature: MessageTypeDefinition<_fedhpc_v1_SurvivorSignature, _fedhpc_v1_SurvivorSignature__Output>
      Task: MessageTypeDefinition<_fedhpc_v1_Task, _fedhpc_v1_Task__Output>
      TasksRequest: MessageTypeDefinition<_fedhpc_v1_TasksRequest, _fedhpc_v1_TasksRequest__Output>
      TensorDigest: MessageTypeDefinition<_fedhpc_v1_TensorDigest, _fedhpc_v1_TensorDigest__Output>
      TensorSpec: MessageTypeDefinition<_fedhpc_v1_TensorSpec, _fedhpc_v1_TensorSpec__Output>
      TrainTask: MessageTypeDefinition<_fedhpc_v1_TrainTask, _fedhpc_v1_TrainTask__Output>
      TrainingFailure: MessageTypeDefinition<_fedhpc_v1_TrainingFailure, _fedhpc_v1_TrainingFailure__Output>
      TransferPart: MessageTypeDefinition<_fedhpc_v1_TransferPart, _fedhpc_v1_TransferPart__Output>
      TransferProgress: MessageTypeDefinition<_fedhpc_v1_TransferProgress, _fedhpc_v1_TransferProgress__Output>
      UnmaskResponse: MessageTypeDefinition<_fedhpc_v1_UnmaskResponse, _fedhpc_v1_UnmaskResponse__Output>
      UnmaskTask: MessageTypeDefinition<_fedhpc_v1_UnmaskTask, _fedhpc_v1_UnmaskTask__Output>
      UploadAccepted: MessageTypeDefinition<_fedhpc_v1_UploadAccepted, _fedhpc_v1_UploadAccepted__Output>
      UploadAck: MessageTypeDefinition<_fedhpc_v1_UploadAck, _fedhpc_v1_UploadAck__Output>
      UploadAdmission: MessageTypeDefinition<_fedhpc_v1_UploadAdmission, _fedhpc_v1_UploadAdmission__Output>
      UploadChunk: MessageTypeDefinition<_fedhpc_v1_UploadChunk, _fedhpc_v1_UploadChunk__Output>
      UploadHeader: MessageTypeDefinition<_fedhpc_v1_UploadHeader, _fedhpc_v1_UploadHeader__Output>
      UploadMessage: MessageTypeDefinition<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadMessage__Output>
      UploadQueued: MessageTypeDefinition<_fedhpc_v1_UploadQueued, _fedhpc_v1_UploadQueued__Output>
      UploadReply: MessageTypeDefinition<_fedhpc_v1_UploadReply, _fedhpc_v1_UploadReply__Output>
      UploadResend: MessageTypeDefinition<_fedhpc_v1_UploadResend, _fedhpc_v1_UploadResend__Output>
      UploadResult: MessageTypeDefinition<_fedhpc_v1_UploadResult, _fedhpc_v1_UploadResult__Output>
      UploadTrailer: MessageTypeDefinition<_fedhpc_v1_UploadTrailer, _fedhpc_v1_UploadTrailer__Output>
      UsageRequest: MessageTypeDefinition<_fedhpc_v1_UsageRequest, _fedhpc_v1_UsageRequest__Output>
      UsageResponse: MessageTypeDefinition<_fedhpc_v1_UsageResponse, _fedhpc_v1_UsageResponse__Output>
      UsageRound: MessageTypeDefinition<_fedhpc_v1_UsageRound, _fedhpc_v1_UsageRound__Output>
      UsageRow: MessageTypeDefinition<_fedhpc_v1_UsageRow, _fedhpc_v1_UsageRow__Output>
    }
  }
}

