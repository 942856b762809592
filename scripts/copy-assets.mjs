// Copies the non-TypeScript files the built package needs at run time (the .proto contract).
import { cpSync, mkdirSync } from 'node:fs';
mkdirSync('dist/proto', { recursive: true });
cpSync('proto/fedhpc', 'dist/proto/fedhpc', { recursive: true });
// The PyTorch reference trainer and its configs, started by the command and Slurm runners.
mkdirSync('dist/site-agent/trainers', { recursive: true });
cpSync('site-agent/trainers/torch_shard.py', 'dist/site-agent/trainers/torch_shard.py');
cpSync('site-agent/trainers/configs', 'dist/site-agent/trainers/configs', { recursive: true });
// The default sbatch template of the Slurm runner.
mkdirSync('dist/deploy/slurm', { recursive: true });
cpSync('deploy/slurm', 'dist/deploy/slurm', { recursive: true });
