/** `fedhpc export`: a committed model in Hugging Face layout with its provenance card, and its verification. */
export { EXPORT_ERROR_CODES, ExportError, type ExportErrorCode } from './errors.js';
export { exportHf, TOKENIZER_FILES, type ExportHfOptions, type ExportHfResult } from './export-hf.js';
export { verifyHfExport, type ExportVerifyReport } from './verify.js';
export { HF_SHARD_LIMIT_BYTES } from './weights.js';
