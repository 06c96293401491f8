import { workspaceTestConfig } from '../vitest.base.ts'

// Every e2e file starts its own bridge on port 0 and its own sidecars, so files run in parallel.
export default workspaceTestConfig(['e2e/**/*.test.ts', 'fixtures/**/*.test.ts'])
