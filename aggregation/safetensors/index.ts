/** Streaming safetensors: byte sources and sinks, header validation, reader, writer, dtypes. */
export { type ByteSink, type ByteSource, type MemorySink, memorySink, memorySource, readExactly } from './byte-io.js';
export {
  type Dtype,
  type FloatDtype,
  DTYPE_SIZES,
  FLOAT_DTYPES,
  aligned,
  bf16ToF32,
  decodeToF32,
  dtypeSize,
  encodeFromF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isDtype,
  isFloatDtype,
  narrowingOverflow,
} from './dtype.js';
export {
  type SafetensorsHeader,
  type SafetensorsPlan,
  type SafetensorsTensorInfo,
  type SafetensorsTensorSpec,
  SAFETENSORS_MAX_HEADER_BYTES,
  parseHeaderJson,
  parseHeaderLength,
  parseSafetensorsHeader,
  planSafetensors,
} from './header.js';
export { type SafetensorsFile, openSafetensors } from './reader.js';
export { type SafetensorsWriter, createSafetensorsWriter } from './writer.js';
