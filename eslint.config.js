import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', 'bench/node_modules/**', 'bench/results/**', 'bench/.content/**', 'coverage/**', 'examples/**']
  }),
  {
    // Type-aware promise rules on the library and server code: a dropped
    // promise there is a lost flush or an unhandled rejection in production.
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error'
    }
  },
  {
    // The dashboard's page script runs in the browser (neostandard's
    // globals lack some of its APIs).
    files: ['web/**/*.js'],
    languageOptions: { globals: { EventSource: 'readonly' } }
  }
]
