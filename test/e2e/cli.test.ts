/**
 * @module test/e2e/cli
 *
 * The `ferry` command as a user runs it (`node bridge/dist/bin.js …`): keyring files, and the
 * start-up errors and warnings of `ferry serve`.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadKeyringFile } from '@ferry/bridge'
import {
  type BridgeProcess,
  cleanEnv,
  fixturePath,
  runFerry,
  startBridgeProcess,
  tempDir,
  writeCatalog,
} from '../helpers/bridge.ts'

let dir: string
const bridges: BridgeProcess[] = []

beforeAll(() => {
  dir = tempDir('ferry-e2e-cli-')
})
afterEach(async () => {
  for (const bridge of bridges.splice(0)) await bridge.stop('SIGTERM')
})

const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m

const goodCatalog = () =>
  writeCatalog(
    tempDir('ferry-e2e-cli-catalog-'),
    {
      bridge: { host: '127.0.0.1', port: 0, logLevel: 'info', shutdownGrace: '200ms' },
      servers: { fixture: { runtime: 'local', command: process.execPath, args: [fixturePath] } },
    },
    'catalog.yaml'
  )

describe('ferry keys new', () => {
  it('creates a 0600 keyring file, and a second run adds a key', async () => {
    const file = join(dir, 'nested', 'keys.json')
    const first = await runFerry(['keys', 'new', file])
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toContain(file)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const one = JSON.parse(readFileSync(file, 'utf8')) as { keys: { id: string }[] }
    expect(one.keys).toHaveLength(1)

    const second = await runFerry(['keys', 'new', file])
    expect(second.code, second.stderr).toBe(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const two = JSON.parse(readFileSync(file, 'utf8')) as { keys: { id: string }[] }
    expect(two.keys).toHaveLength(2)
    expect(two.keys[0]).toEqual(one.keys[0])
    expect(two.keys[1]!.id).not.toBe(two.keys[0]!.id)
    expect(second.stdout).toContain(two.keys[1]!.id)

    const keyring = await loadKeyringFile(file)
    for (const key of two.keys) expect(keyring.has(key.id)).toBe(true)
  })

  it('refuses to add to a broken keyring file, without a stack trace', async () => {
    const file = join(dir, 'broken-keys.json')
    writeFileSync(file, '{"keys": [{"id": "x"}]}', { mode: 0o600 })
    const result = await runFerry(['keys', 'new', file])
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(file)
    expect(result.stderr).not.toMatch(STACK_FRAME)
    expect(readFileSync(file, 'utf8')).toBe('{"keys": [{"id": "x"}]}')
  })
})

describe('ferry serve with a bad catalog', () => {
  const serveWith = (catalogFile: string) =>
    runFerry(['serve'], { ...cleanEnv(), FERRY_CONFIG: catalogFile, PORT: '0' })

  it('exits non-zero, printing the path and each bad field, with no stack trace', async () => {
    const file = join(tempDir('ferry-e2e-cli-bad-'), 'catalog.yaml')
    writeFileSync(
      file,
      [
        'bridge:',
        '  port: 99999',
        '  bodyLimit: lots',
        '  logLevel: loud',
        '  sessionMaxAge: soon',
        'servers:',
        '  good-name:',
        '    runtime: local',
        '    args: [1]',
        '  Bad_Name:',
        '    runtime: local',
        '    command: x',
        '',
      ].join('\n')
    )
    const result = await serveWith(file)
    expect(result.code).not.toBe(0)
    expect(result.code).not.toBeNull()
    const output = result.stderr
    expect(output).toContain(file)
    for (const field of [
      'bridge.port',
      'bridge.bodyLimit',
      'bridge.logLevel',
      'bridge.sessionMaxAge',
      'servers.good-name.command',
      'servers.good-name.args[0]',
      'Bad_Name',
    ]) {
      expect(output, `mentions ${field}`).toContain(field)
    }
    expect(output).not.toMatch(STACK_FRAME)
    expect(output).not.toContain('bridge listening')
  })

  it('names the line of a YAML syntax error', async () => {
    const file = join(tempDir('ferry-e2e-cli-bad-'), 'catalog.yaml')
    writeFileSync(file, 'servers:\n  fixture: {runtime: local, command: [\n')
    const result = await serveWith(file)
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(file)
    expect(result.stderr).toMatch(/line \d+/)
    expect(result.stderr).not.toMatch(STACK_FRAME)
  })

  it('names a catalog file that does not exist', async () => {
    const file = join(dir, 'no-such-catalog.yaml')
    const result = await serveWith(file)
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(file)
    expect(result.stderr).toMatch(/not found/i)
    expect(result.stderr).not.toMatch(STACK_FRAME)
  })

  it('names a keyring file that does not exist', async () => {
    const keys = join(dir, 'no-such-keys.json')
    const result = await runFerry(['serve'], {
      ...cleanEnv(),
      FERRY_CONFIG: goodCatalog(),
      FERRY_SESSION_KEYS: keys,
      PORT: '0',
    })
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(keys)
    expect(result.stderr).not.toMatch(STACK_FRAME)
  })
})

describe('ferry serve without FERRY_SESSION_KEYS', () => {
  const restartWarning = (bridge: BridgeProcess) =>
    bridge.logs.filter(
      (line) => typeof line.msg === 'string' && /FERRY_SESSION_KEYS/.test(line.msg)
    )

  it('warns that sessions will not survive a restart', async () => {
    const bridge = await startBridgeProcess({ catalogFile: goodCatalog() })
    bridges.push(bridge)
    const warnings = restartWarning(bridge)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.level).toBe('warn')
    expect(warnings[0]!.msg).toMatch(/restart/)
    const health = await fetch(`http://127.0.0.1:${bridge.port}/healthz`)
    expect(health.status).toBe(200)
  })

  it('does not warn when FERRY_SESSION_KEYS is set', async () => {
    const keys = join(tempDir('ferry-e2e-cli-keys-'), 'keys.json')
    expect((await runFerry(['keys', 'new', keys])).code).toBe(0)
    const bridge = await startBridgeProcess({ catalogFile: goodCatalog(), keysFile: keys })
    bridges.push(bridge)
    expect(restartWarning(bridge)).toEqual([])
  })
})
