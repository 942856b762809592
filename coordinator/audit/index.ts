/** The audit trail: verification and export of the journal, receipts, and what the run journals. */
export { verifyAudit, type AuditBreak, type AuditLine, type AuditReport, type MissingReceipt, type VerifyAuditOptions } from './verify.js';
export {
  exportLines,
  journalFile,
  parseAuditLines,
  readJournalStreamTrail,
  readStateDirTrail,
  readStreamTrail,
  type JournalStreamTrailOptions,
  type StreamTrailOptions,
} from './source.js';
export { ReceiptDesk, type ReceiptDeskOptions, type SubmittedReceipt } from './receipts.js';
export { auditedConfig } from './config.js';
export { tapAppends } from './tap.js';
