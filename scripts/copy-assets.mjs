// Copies the non-TypeScript files the built package needs at run time (the .proto contract).
import { cpSync, mkdirSync } from 'node:fs';
mkdirSync('dist/proto', { recursive: true });
cpSync('proto/fedhpc', 'dist/proto/fedhpc', { recursive: true });
