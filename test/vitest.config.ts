import { workspaceTestConfig } from '../vitest.base.ts'

// Every file starts its own bridge, cluster or sidecars on port 0, so files run in parallel.
export default workspaceTestConfig([
  'auth/**/*.test.ts',
  'bench/**/*.test.ts',
  'e2e/**/*.test.ts',
  'fixtures/**/*.test.ts',
  'k8s/**/*.test.ts',
  'manifests/**/*.test.ts',
  'scale/**/*.test.ts',
])
