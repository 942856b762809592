// Every test file runs with the native kernels the CLI's processes load (aggregation/native.ts,
// common/native.ts), or without them where the module is not built or FEDHPC_NATIVE=off.
import { useNativeKernels } from '../../aggregation/index.js';
import { loadNativeModule } from '../../common/native.js';

useNativeKernels(loadNativeModule());
