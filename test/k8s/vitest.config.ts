/**
 * @module test/k8s/vitest.config
 *
 * Runs only the simulated-cluster tests (`npx vitest run -c k8s/vitest.config.ts` from `test/`),
 * until the workspace's own config includes `k8s/**`.
 */
import { workspaceTestConfig } from '../../vitest.base.ts'

export default workspaceTestConfig(['k8s/**/*.test.ts'])
