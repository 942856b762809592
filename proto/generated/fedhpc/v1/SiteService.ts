// Original file: proto/fedhpc/v1/fedhpc.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { Ack as _fedhpc_v1_Ack, Ack__Output as _fedhpc_v1_Ack__Output } from '../../fedhpc/v1/Ack';
import type { DownloadAdmission as _fedhpc_v1_DownloadAdmission, DownloadAdmission__Output as _fedhpc_v1_DownloadAdmission__Output } from '../../fedhpc/v1/DownloadAdmission';
import type { DownloadRequest as _fedhpc_v1_DownloadRequest, DownloadRequest__Output as _fedhpc_v1_DownloadRequest__Output } from '../../fedhpc/v1/DownloadRequest';
import type { EvalReport as _fedhpc_v1_EvalReport, EvalReport__Output as _fedhpc_v1_EvalReport__Output } from '../../fedhpc/v1/EvalReport';
import type { HeartbeatRequest as _fedhpc_v1_HeartbeatRequest, HeartbeatRequest__Output as _fedhpc_v1_HeartbeatRequest__Output } from '../../fedhpc/v1/HeartbeatRequest';
import type { HeartbeatResponse as _fedhpc_v1_HeartbeatResponse, HeartbeatResponse__Output as _fedhpc_v1_HeartbeatResponse__Output } from '../../fedhpc/v1/HeartbeatResponse';
import type { JoinRequest as _fedhpc_v1_JoinRequest, JoinRequest__Output as _fedhpc_v1_JoinRequest__Output } from '../../fedhpc/v1/JoinRequest';
import type { JoinResponse as _fedhpc_v1_JoinResponse, JoinResponse__Output as _fedhpc_v1_JoinResponse__Output } from '../../fedhpc/v1/JoinResponse';
import type { KeyAdvertisement as _fedhpc_v1_KeyAdvertisement, KeyAdvertisement__Output as _fedhpc_v1_KeyAdvertisement__Output } from '../../fedhpc/v1/KeyAdvertisement';
import type { ModelChunk as _fedhpc_v1_ModelChunk, ModelChunk__Output as _fedhpc_v1_ModelChunk__Output } from '../../fedhpc/v1/ModelChunk';
import type { RoundReceipt as _fedhpc_v1_RoundReceipt, RoundReceipt__Output as _fedhpc_v1_RoundReceipt__Output } from '../../fedhpc/v1/RoundReceipt';
import type { SharesSubmission as _fedhpc_v1_SharesSubmission, SharesSubmission__Output as _fedhpc_v1_SharesSubmission__Output } from '../../fedhpc/v1/SharesSubmission';
import type { SurvivorSignature as _fedhpc_v1_SurvivorSignature, SurvivorSignature__Output as _fedhpc_v1_SurvivorSignature__Output } from '../../fedhpc/v1/SurvivorSignature';
import type { Task as _fedhpc_v1_Task, Task__Output as _fedhpc_v1_Task__Output } from '../../fedhpc/v1/Task';
import type { TasksRequest as _fedhpc_v1_TasksRequest, TasksRequest__Output as _fedhpc_v1_TasksRequest__Output } from '../../fedhpc/v1/TasksRequest';
import type { TrainingFailure as _fedhpc_v1_TrainingFailure, TrainingFailure__Output as _fedhpc_v1_TrainingFailure__Output } from '../../fedhpc/v1/TrainingFailure';
import type { UnmaskResponse as _fedhpc_v1_UnmaskResponse, UnmaskResponse__Output as _fedhpc_v1_UnmaskResponse__Output } from '../../fedhpc/v1/UnmaskResponse';
import type { UploadAdmission as _fedhpc_v1_UploadAdmission, UploadAdmission__Output as _fedhpc_v1_UploadAdmission__Output } from '../../fedhpc/v1/UploadAdmission';
import type { UploadHeader as _fedhpc_v1_UploadHeader, UploadHeader__Output as _fedhpc_v1_UploadHeader__Output } from '../../fedhpc/v1/UploadHeader';
import type { UploadMessage as _fedhpc_v1_UploadMessage, UploadMessage__Output as _fedhpc_v1_UploadMessage__Output } from '../../fedhpc/v1/UploadMessage';
import type { UploadReply as _fedhpc_v1_UploadReply, UploadReply__Output as _fedhpc_v1_UploadReply__Output } from '../../fedhpc/v1/UploadReply';

export interface SiteServiceClient extends grpc.Client {
  AdmitDownload(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitDownload(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitDownload(argument: _fedhpc_v1_DownloadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitDownload(argument: _fedhpc_v1_DownloadRequest, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  admitDownload(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  admitDownload(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  admitDownload(argument: _fedhpc_v1_DownloadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  admitDownload(argument: _fedhpc_v1_DownloadRequest, callback: grpc.requestCallback<_fedhpc_v1_DownloadAdmission__Output>): grpc.ClientUnaryCall;
  
  AdmitUpload(argument: _fedhpc_v1_UploadHeader, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitUpload(argument: _fedhpc_v1_UploadHeader, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitUpload(argument: _fedhpc_v1_UploadHeader, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  AdmitUpload(argument: _fedhpc_v1_UploadHeader, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  admitUpload(argument: _fedhpc_v1_UploadHeader, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  admitUpload(argument: _fedhpc_v1_UploadHeader, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  admitUpload(argument: _fedhpc_v1_UploadHeader, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  admitUpload(argument: _fedhpc_v1_UploadHeader, callback: grpc.requestCallback<_fedhpc_v1_UploadAdmission__Output>): grpc.ClientUnaryCall;
  
  AdvertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  AdvertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  AdvertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  AdvertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  advertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  advertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  advertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  advertiseKeys(argument: _fedhpc_v1_KeyAdvertisement, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  Download(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_ModelChunk__Output>;
  Download(argument: _fedhpc_v1_DownloadRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_ModelChunk__Output>;
  download(argument: _fedhpc_v1_DownloadRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_ModelChunk__Output>;
  download(argument: _fedhpc_v1_DownloadRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_ModelChunk__Output>;
  
  Heartbeat(argument: _fedhpc_v1_HeartbeatRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  Heartbeat(argument: _fedhpc_v1_HeartbeatRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  Heartbeat(argument: _fedhpc_v1_HeartbeatRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  Heartbeat(argument: _fedhpc_v1_HeartbeatRequest, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  heartbeat(argument: _fedhpc_v1_HeartbeatRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  heartbeat(argument: _fedhpc_v1_HeartbeatRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  heartbeat(argument: _fedhpc_v1_HeartbeatRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  heartbeat(argument: _fedhpc_v1_HeartbeatRequest, callback: grpc.requestCallback<_fedhpc_v1_HeartbeatResponse__Output>): grpc.ClientUnaryCall;
  
  Heartbeats(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse__Output>;
  Heartbeats(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse__Output>;
  heartbeats(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse__Output>;
  heartbeats(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse__Output>;
  
  Join(argument: _fedhpc_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedhpc_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedhpc_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedhpc_v1_JoinRequest, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedhpc_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedhpc_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedhpc_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedhpc_v1_JoinRequest, callback: grpc.requestCallback<_fedhpc_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  
  ReportEval(argument: _fedhpc_v1_EvalReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportEval(argument: _fedhpc_v1_EvalReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportEval(argument: _fedhpc_v1_EvalReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportEval(argument: _fedhpc_v1_EvalReport, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportEval(argument: _fedhpc_v1_EvalReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportEval(argument: _fedhpc_v1_EvalReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportEval(argument: _fedhpc_v1_EvalReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportEval(argument: _fedhpc_v1_EvalReport, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  ReportFailure(argument: _fedhpc_v1_TrainingFailure, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportFailure(argument: _fedhpc_v1_TrainingFailure, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportFailure(argument: _fedhpc_v1_TrainingFailure, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  ReportFailure(argument: _fedhpc_v1_TrainingFailure, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportFailure(argument: _fedhpc_v1_TrainingFailure, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportFailure(argument: _fedhpc_v1_TrainingFailure, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportFailure(argument: _fedhpc_v1_TrainingFailure, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  reportFailure(argument: _fedhpc_v1_TrainingFailure, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  RevealShares(argument: _fedhpc_v1_UnmaskResponse, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  RevealShares(argument: _fedhpc_v1_UnmaskResponse, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  RevealShares(argument: _fedhpc_v1_UnmaskResponse, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  RevealShares(argument: _fedhpc_v1_UnmaskResponse, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  revealShares(argument: _fedhpc_v1_UnmaskResponse, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  revealShares(argument: _fedhpc_v1_UnmaskResponse, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  revealShares(argument: _fedhpc_v1_UnmaskResponse, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  revealShares(argument: _fedhpc_v1_UnmaskResponse, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  SignSurvivors(argument: _fedhpc_v1_SurvivorSignature, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SignSurvivors(argument: _fedhpc_v1_SurvivorSignature, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SignSurvivors(argument: _fedhpc_v1_SurvivorSignature, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SignSurvivors(argument: _fedhpc_v1_SurvivorSignature, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  signSurvivors(argument: _fedhpc_v1_SurvivorSignature, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  signSurvivors(argument: _fedhpc_v1_SurvivorSignature, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  signSurvivors(argument: _fedhpc_v1_SurvivorSignature, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  signSurvivors(argument: _fedhpc_v1_SurvivorSignature, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  SubmitReceipt(argument: _fedhpc_v1_RoundReceipt, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitReceipt(argument: _fedhpc_v1_RoundReceipt, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitReceipt(argument: _fedhpc_v1_RoundReceipt, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitReceipt(argument: _fedhpc_v1_RoundReceipt, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitReceipt(argument: _fedhpc_v1_RoundReceipt, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitReceipt(argument: _fedhpc_v1_RoundReceipt, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitReceipt(argument: _fedhpc_v1_RoundReceipt, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitReceipt(argument: _fedhpc_v1_RoundReceipt, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  SubmitShares(argument: _fedhpc_v1_SharesSubmission, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitShares(argument: _fedhpc_v1_SharesSubmission, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitShares(argument: _fedhpc_v1_SharesSubmission, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  SubmitShares(argument: _fedhpc_v1_SharesSubmission, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitShares(argument: _fedhpc_v1_SharesSubmission, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitShares(argument: _fedhpc_v1_SharesSubmission, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitShares(argument: _fedhpc_v1_SharesSubmission, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  submitShares(argument: _fedhpc_v1_SharesSubmission, callback: grpc.requestCallback<_fedhpc_v1_Ack__Output>): grpc.ClientUnaryCall;
  
  Tasks(argument: _fedhpc_v1_TasksRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Task__Output>;
  Tasks(argument: _fedhpc_v1_TasksRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Task__Output>;
  tasks(argument: _fedhpc_v1_TasksRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Task__Output>;
  tasks(argument: _fedhpc_v1_TasksRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Task__Output>;
  
  Upload(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadReply__Output>;
  Upload(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadReply__Output>;
  upload(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadReply__Output>;
  upload(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadReply__Output>;
  
}

export interface SiteServiceHandlers extends grpc.UntypedServiceImplementation {
  AdmitDownload: grpc.handleUnaryCall<_fedhpc_v1_DownloadRequest__Output, _fedhpc_v1_DownloadAdmission>;
  
  AdmitUpload: grpc.handleUnaryCall<_fedhpc_v1_UploadHeader__Output, _fedhpc_v1_UploadAdmission>;
  
  AdvertiseKeys: grpc.handleUnaryCall<_fedhpc_v1_KeyAdvertisement__Output, _fedhpc_v1_Ack>;
  
  Download: grpc.handleServerStreamingCall<_fedhpc_v1_DownloadRequest__Output, _fedhpc_v1_ModelChunk>;
  
  Heartbeat: grpc.handleUnaryCall<_fedhpc_v1_HeartbeatRequest__Output, _fedhpc_v1_HeartbeatResponse>;
  
  Heartbeats: grpc.handleBidiStreamingCall<_fedhpc_v1_HeartbeatRequest__Output, _fedhpc_v1_HeartbeatResponse>;
  
  Join: grpc.handleUnaryCall<_fedhpc_v1_JoinRequest__Output, _fedhpc_v1_JoinResponse>;
  
  ReportEval: grpc.handleUnaryCall<_fedhpc_v1_EvalReport__Output, _fedhpc_v1_Ack>;
  
  ReportFailure: grpc.handleUnaryCall<_fedhpc_v1_TrainingFailure__Output, _fedhpc_v1_Ack>;
  
  RevealShares: grpc.handleUnaryCall<_fedhpc_v1_UnmaskResponse__Output, _fedhpc_v1_Ack>;
  
  SignSurvivors: grpc.handleUnaryCall<_fedhpc_v1_SurvivorSignature__Output, _fedhpc_v1_Ack>;
  
  SubmitReceipt: grpc.handleUnaryCall<_fedhpc_v1_RoundReceipt__Output, _fedhpc_v1_Ack>;
  
  SubmitShares: grpc.handleUnaryCall<_fedhpc_v1_SharesSubmission__Output, _fedhpc_v1_Ack>;
  
  Tasks: grpc.handleServerStreamingCall<_fedhpc_v1_TasksRequest__Output, _fedhpc_v1_Task>;
  
  Upload: grpc.handleBidiStreamingCall<_fedhpc_v1_UploadMessage__Output, _fedhpc_v1_UploadReply>;
  
}

export interface SiteServiceDefinition extends grpc.ServiceDefinition {
  AdmitDownload: MethodDefinition<_fedhpc_v1_DownloadRequest, _fedhpc_v1_DownloadAdmission, _fedhpc_v1_DownloadRequest__Output, _fedhpc_v1_DownloadAdmission__Output>
  AdmitUpload: MethodDefinition<_fedhpc_v1_UploadHeader, _fedhpc_v1_UploadAdmission, _fedhpc_v1_UploadHeader__Output, _fedhpc_v1_UploadAdmission__Output>
  AdvertiseKeys: MethodDefinition<_fedhpc_v1_KeyAdvertisement, _fedhpc_v1_Ack, _fedhpc_v1_KeyAdvertisement__Output, _fedhpc_v1_Ack__Output>
  Download: MethodDefinition<_fedhpc_v1_DownloadRequest, _fedhpc_v1_ModelChunk, _fedhpc_v1_DownloadRequest__Output, _fedhpc_v1_ModelChunk__Output>
  Heartbeat: MethodDefinition<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse, _fedhpc_v1_HeartbeatRequest__Output, _fedhpc_v1_HeartbeatResponse__Output>
  Heartbeats: MethodDefinition<_fedhpc_v1_HeartbeatRequest, _fedhpc_v1_HeartbeatResponse, _fedhpc_v1_HeartbeatRequest__Output, _fedhpc_v1_HeartbeatResponse__Output>
  Join: MethodDefinition<_fedhpc_v1_JoinRequest, _fedhpc_v1_JoinResponse, _fedhpc_v1_JoinRequest__Output, _fedhpc_v1_JoinResponse__Output>
  ReportEval: MethodDefinition<_fedhpc_v1_EvalReport, _fedhpc_v1_Ack, _fedhpc_v1_EvalReport__Output, _fedhpc_v1_Ack__Output>
  ReportFailure: MethodDefinition<_fedhpc_v1_TrainingFailure, _fedhpc_v1_Ack, _fedhpc_v1_TrainingFailure__Output, _fedhpc_v1_Ack__Output>
  RevealShares: MethodDefinition<_fedhpc_v1_UnmaskResponse, _fedhpc_v1_Ack, _fedhpc_v1_UnmaskResponse__Output, _fedhpc_v1_Ack__Output>
  SignSurvivors: MethodDefinition<_fedhpc_v1_SurvivorSignature, _fedhpc_v1_Ack, _fedhpc_v1_SurvivorSignature__Output, _fedhpc_v1_Ack__Output>
  SubmitReceipt: MethodDefinition<_fedhpc_v1_RoundReceipt, _fedhpc_v1_Ack, _fedhpc_v1_RoundReceipt__Output, _fedhpc_v1_Ack__Output>
  SubmitShares: MethodDefinition<_fedhpc_v1_SharesSubmission, _fedhpc_v1_Ack, _fedhpc_v1_SharesSubmission__Output, _fedhpc_v1_Ack__Output>
  Tasks: MethodDefinition<_fedhpc_v1_TasksRequest, _fedhpc_v1_Task, _fedhpc_v1_TasksRequest__Output, _fedhpc_v1_Task__Output>
  Upload: MethodDefinition<_fedhpc_v1_UploadMessage, _fedhpc_v1_UploadReply, _fedhpc_v1_UploadMessage__Output, _fedhpc_v1_UploadReply__Output>
}
