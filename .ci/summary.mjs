// Adds up the JSON reports vitest wrote in every workspace and prints one line
// in the plain "N passed, N failed" form CI reads.
import { existsSync, readFileSync } from 'node:fs'

let passed = 0
let failed = 0
let skipped = 0
for (const workspace of ['shared', 'sidecar', 'bridge', 'test']) {
  const file = `${workspace}/test-results/vitest.json`
  if (!existsSync(file)) continue
  const report = JSON.parse(readFileSync(file, 'utf8'))
  passed += report.numPassedTests
  failed += report.numFailedTests
  skipped += report.numPendingTests + report.numTodoTests
  console.log(`  ${workspace} (${report.numPassedTests} passed / ${report.numFailedTests} failed)`)
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
