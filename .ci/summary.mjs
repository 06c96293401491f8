// Adds up the JSON reports vitest wrote in every workspace (and the real-API-server tier's run of
// the Kubernetes suite, `npm run test:k8s-real`) and prints one line in the plain
// "N passed, N failed" form CI reads.
import { existsSync, readFileSync } from 'node:fs'

const reports = [
  ...['shared', 'sidecar', 'bridge', 'test'].map((workspace) => [
    workspace,
    `${workspace}/test-results/vitest.json`,
  ]),
  ['test (k8s-real)', 'test/test-results/vitest-k8s-real.json'],
]

let passed = 0
let failed = 0
let skipped = 0
for (const [name, file] of reports) {
  if (!existsSync(file)) continue
  const report = JSON.parse(readFileSync(file, 'utf8'))
  passed += report.numPassedTests
  failed += report.numFailedTests
  skipped += report.numPendingTests + report.numTodoTests
  console.log(`  ${name} (${report.numPassedTests} passed / ${report.numFailedTests} failed)`)
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
