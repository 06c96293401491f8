/**
 * Runs the official MCP conformance suite against Ferry: a bridge on loopback
 * (local runtime) in front of the conformance fixture stdio server.
 *
 * - `@modelcontextprotocol/conformance@0.1.16 server --suite all` (32 scenarios);
 * - `server-session-lifecycle` from 0.2.0-alpha.12 with `--spec-version 2025-11-25`.
 *
 * Exits non-zero on any failure. Usage: `node conformance/run.ts [--via <url-rewriter>]`.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { Keyring, serveBridge } from '@ferry/bridge'
import { CatalogSchema, createLogger } from '@ferry/shared'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const fixture = join(here, '../fixtures/conformance-server.ts')

const cliOf = (pkg: string) => {
  const manifest = require.resolve(`${pkg}/package.json`)
  const { bin } = require(manifest) as { bin: string | Record<string, string> }
  return join(dirname(manifest), typeof bin === 'string' ? bin : Object.values(bin)[0]!)
}

interface Check {
  id: string
  status: string
  errorMessage?: string
}

const run = (args: string[]): Promise<number> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('exit', (code) => {
      if (code !== 0) process.stdout.write(output)
      resolve(code ?? 1)
    })
  })

/** Reads every scenario's checks.json under `dir`. */
const results = (dir: string) => {
  const scenarios = new Map<string, Check[]>()
  for (const entry of readdirSync(dir)) {
    const file = join(dir, entry, 'checks.json')
    if (!existsSync(file)) continue
    const name = entry.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '')
    scenarios.set(name, JSON.parse(readFileSync(file, 'utf8')) as Check[])
  }
  return scenarios
}

const summarize = (label: string, dir: string) => {
  const scenarios = results(dir)
  let passedScenarios = 0
  let passedChecks = 0
  let failedChecks = 0
  const failures: string[] = []
  for (const [name, checks] of scenarios) {
    const failed = checks.filter((c) => c.status === 'FAILURE')
    for (const check of checks.filter((c) => c.status === 'WARNING')) {
      failures.push(`  warning: ${name}: ${check.id}: ${check.errorMessage ?? ''}`)
    }
    passedChecks += checks.filter((c) => c.status === 'SUCCESS').length
    failedChecks += failed.length
    if (failed.length === 0) passedScenarios++
    for (const check of failed) failures.push(`  ${name}: ${check.id}: ${check.errorMessage ?? ''}`)
  }
  console.log(
    `${label}: ${passedScenarios}/${scenarios.size} scenarios passed, ${passedChecks} checks passed, ${failedChecks} failed`
  )
  for (const line of failures) console.log(line)
  return { scenarios: scenarios.size, passedScenarios, failedChecks }
}

const catalog = CatalogSchema.parse({
  bridge: {
    host: '127.0.0.1',
    port: 0,
    logLevel: 'warn',
    sse: { pollAfter: '400ms', retry: 200 },
  },
  defaultServer: 'conformance',
  servers: {
    conformance: {
      runtime: 'local',
      command: process.execPath,
      args: [fixture],
      idleTimeout: '2m',
      env: { FIXTURE_RECONNECT_DELAY_MS: '1500' },
    },
  },
})
const logger = createLogger({ name: 'bridge', level: 'warn' })
const bridge = await serveBridge({ catalog, keyring: await Keyring.generate(), logger })
// A localhost URL, so the DNS-rebinding scenario exercises Host/Origin checks.
const url = `http://localhost:${bridge.port}/mcp`
let failed = false
try {
  const stable = mkdtempSync(join(tmpdir(), 'ferry-conformance-'))
  const code = await run([
    cliOf('@modelcontextprotocol/conformance'),
    'server',
    '--url',
    url,
    '--suite',
    'all',
    '-o',
    stable,
  ])
  const main = summarize('conformance 0.1.16 --suite all', stable)
  if (code !== 0 || main.failedChecks > 0 || main.passedScenarios !== main.scenarios) failed = true

  const next = mkdtempSync(join(tmpdir(), 'ferry-conformance-next-'))
  const nextCode = await run([
    cliOf('conformance-next'),
    'server',
    '--url',
    url,
    '--scenario',
    'server-session-lifecycle',
    '--spec-version',
    '2025-11-25',
    '-o',
    next,
  ])
  const lifecycle = summarize('conformance 0.2.0-alpha.12 server-session-lifecycle', next)
  if (nextCode !== 0 || lifecycle.failedChecks > 0 || lifecycle.scenarios === 0) failed = true
} finally {
  for (const runtime of Object.values(bridge.bridge.runtimes)) {
    await (runtime as { stopAll?: () => Promise<void> }).stopAll?.()
  }
  await bridge.stop()
}
process.exit(failed ? 1 : 0)
