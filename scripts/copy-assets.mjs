// Copies the non-TypeScript files the built package needs at run time (the .proto contract).
import { cpSync, mkdirSync } from 'node:fs';
mkdirSync('dist/proto', { recursive: true });
cpSync('proto/fedhpc', 'dist/proto/fedhpc', { recursive: true });
// Python bytecode caches left by local runs are not part of the package.
/** @param {string} src */
const noPycache = (src) => !src.split(/[\\/]/).includes('__pycache__');
// The PyTorch reference trainer and its configs, started by the command and Slurm runners. It
// imports deploy/slurm/fedhpc_round_dir.py (copied below) from ../../deploy/slurm/, as in the repository.
mkdirSync('dist/site-agent/trainers', { recursive: true });
cpSync('site-agent/trainers/torch_shard.py', 'dist/site-agent/trainers/torch_shard.py');
cpSync('site-agent/trainers/configs', 'dist/site-agent/trainers/configs', { recursive: true });
// The Slurm templates, the NeMo recipe and fedhpc_round_dir.py (the round-directory contract of
// both trainers).
mkdirSync('dist/deploy/slurm', { recursive: true });
cpSync('deploy/slurm', 'dist/deploy/slurm', { recursive: true, filter: noPycache });
// The aggregation kernels (kernels.wasm, also embedded in kernels-wasm.ts) and the kernel pool's
// worker, plain JavaScript that tsc does not emit.
mkdirSync('dist/aggregation/kernels', { recursive: true });
cpSync('aggregation/kernels/kernels.wasm', 'dist/aggregation/kernels/kernels.wasm');
cpSync('aggregation/kernels/kernels.wat', 'dist/aggregation/kernels/kernels.wat');
mkdirSync('dist/coordinator/aggregate', { recursive: true });
cpSync('coordinator/aggregate/kernel-worker.mjs', 'dist/coordinator/aggregate/kernel-worker.mjs');
// The dashboard's pages, scripts and styles, and uPlot from its npm package: every asset the
// dashboard serves is in the build, none is fetched from elsewhere (coordinator/dashboard/server.ts).
cpSync('coordinator/dashboard/static', 'dist/coordinator/dashboard/static', { recursive: true });
mkdirSync('dist/coordinator/dashboard/static/vendor', { recursive: true });
cpSync('node_modules/uplot/dist/uPlot.iife.min.js', 'dist/coordinator/dashboard/static/vendor/uPlot.iife.min.js');
cpSync('node_modules/uplot/dist/uPlot.min.css', 'dist/coordinator/dashboard/static/vendor/uPlot.min.css');
cpSync('node_modules/uplot/LICENSE', 'dist/coordinator/dashboard/static/vendor/uPlot.LICENSE');
