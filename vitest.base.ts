/**
 * Test settings every workspace shares. Besides the console report, each run
 * writes `test-results/vitest.json`, which `.ci/run` adds up into one summary line.
 */
import { defineConfig } from 'vitest/config'

export const workspaceTestConfig = (include: string[]) =>
  defineConfig({
    test: {
      include,
      exclude: ['**/node_modules/**', '**/dist/**'],
      testTimeout: 30_000,
      hookTimeout: 30_000,
      reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
    },
  })
