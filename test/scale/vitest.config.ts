/**
 * @module test/scale/vitest.config
 *
 * Runs only the scale and chaos tests (`npx vitest run -c scale/vitest.config.ts` from `test/`),
 * until the workspace's own config includes `scale/**`.
 */
import { workspaceTestConfig } from '../../vitest.base.ts'

export default workspaceTestConfig(['scale/**/*.test.ts'])
