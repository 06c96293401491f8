/**
 * @module test/k8s-real/vitest.config
 *
 * The Kubernetes end-to-end suite (`e2e/kubernetes.test.ts`) on the real-API-server tier
 * (`FERRY_K8S_TIER=real`): `npm run test:k8s-real` from the repository root, or
 * `npx vitest run -c k8s-real/vitest.config.ts` from `test/`. Its JSON report goes to
 * `test/test-results/vitest-k8s-real.json`, next to (not over) the workspace's `vitest.json`, and
 * `.ci/summary.mjs` adds both up.
 */
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['e2e/kubernetes.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    env: { FERRY_K8S_TIER: 'real' },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', ['json', { outputFile: 'test-results/vitest-k8s-real.json' }]],
  },
})
