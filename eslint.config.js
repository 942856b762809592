// ESLint over every TypeScript and JavaScript file of the project: sources, tests, bench, scripts.
// What it guards (docs/decisions.md, "The toolchain guards"): no import cycles, no dropped
// promises, and each part's internals stay private to it (the layering test in
// test/unit/aggregation/purity.test.ts stays as the second guard).
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

/** Parts with one public surface (`<part>/index.ts`): code outside a part imports only that file. */
const PARTS = ['aggregation', 'coordinator', 'site-agent', 'simulate'];

/**
 * The rule that forbids code in `self` (a part, or none for cli/, bench/ and common/) to reach into
 * another part's files.
 * @param {string | undefined} self
 * @returns {import('eslint').Linter.RulesRecord}
 */
function privateParts(self) {
  const patterns = PARTS.filter((p) => p !== self).map((part) => ({
    regex: `^(\\.\\./)+${part}/(?!index\\.js$).+`,
    message: `import ${part}/index.js: ${part}/'s other files are its own (STYLE.md, "one public surface")`,
  }));
  return { 'no-restricted-imports': ['error', { patterns }] };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'proto/generated/**', 'aggregation/kernels/*.wasm', 'deploy/**'] },
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      ...importX.flatConfigs.typescript.settings,
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts', '.mts', '.js', '.mjs'] },
      'import-x/resolver': undefined,
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/ban-ts-comment': 'error',
    },
  },
  // Each part may import another part only through its index.ts; tests reach internals on purpose.
  ...PARTS.map((part) => ({
    files: [`${part}/**/*.ts`],
    rules: privateParts(part),
  })),
  {
    files: ['cli/**/*.ts', 'bench/**/*.ts', 'common/**/*.ts'],
    rules: privateParts(undefined),
  },
);
