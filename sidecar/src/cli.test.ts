import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  SESSION_ENV,
  UsageError,
  VERIFIER_ENV,
  parseHostArgs,
  parseSidecarArgs,
  sidecarSettingsArgs,
} from './cli.ts'

const env = { [VERIFIER_ENV]: 's3cret', PATH: '/usr/bin', HOME: '/home/x' }
const parse = (argv: string[], environment: Record<string, string | undefined> = env) =>
  parseSidecarArgs(argv, environment)
const usageError = (argv: string[], environment: Record<string, string | undefined> = env) => {
  try {
    parse(argv, environment)
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError)
    return (error as Error).message
  }
  throw new Error('expected a usage error')
}

const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('parseSidecarArgs', () => {
  it('fills in the defaults', () => {
    const options = parse(['--session', 's1', '--', 'node', 'server.js', '--flag'])
    expect(options).toEqual({
      command: 'node',
      args: ['server.js', '--flag'],
      env: { PATH: '/usr/bin', HOME: '/home/x' },
      cwd: undefined,
      sessionName: 's1',
      verifier: 's3cret',
      host: '127.0.0.1',
      port: 8080,
      idleTimeoutMs: 15 * 60_000,
      stopGraceMs: 5000,
      maxLineBytes: 16 * 1024 * 1024,
      maxPayload: 16 * 1024 * 1024,
      heartbeatMs: 15_000,
      eventLog: { maxEvents: 1000, maxBytes: 8 * 1024 * 1024, maxAgeMs: 10 * 60_000 },
      readyFd: undefined,
      logLevel: 'info',
    })
  })

  it('takes the session and host from the environment', () => {
    const options = parse(['--', 'cmd'], { ...env, [SESSION_ENV]: 'from-env', POD_IP: '10.1.2.3' })
    expect(options.sessionName).toBe('from-env')
    expect(options.host).toBe('10.1.2.3')
    expect(
      parse(['--session', 'flag', '--host', '0.0.0.0', '--', 'cmd'], { ...env, [SESSION_ENV]: 'e' })
    ).toMatchObject({ sessionName: 'flag', host: '0.0.0.0' })
  })

  it('parses every option', () => {
    const options = parse([
      '--session=s2',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--idle-timeout',
      '300ms',
      '--stop-grace',
      '1.5s',
      '--max-line',
      '1kb',
      '--max-payload',
      '2048',
      '--heartbeat',
      '2m',
      '--log-max-events',
      '10',
      '--log-max-bytes',
      '1mb',
      '--log-max-age',
      '1h',
      '--ready-fd',
      '3',
      '--cwd',
      '/tmp',
      '--log-level',
      'debug',
      '--',
      'uvx',
      'mcp-server',
    ])
    expect(options).toMatchObject({
      sessionName: 's2',
      port: 0,
      idleTimeoutMs: 300,
      stopGraceMs: 1500,
      maxLineBytes: 1024,
      maxPayload: 2048,
      heartbeatMs: 120_000,
      eventLog: { maxEvents: 10, maxBytes: 1024 * 1024, maxAgeMs: 3_600_000 },
      readyFd: 3,
      cwd: '/tmp',
      logLevel: 'debug',
      command: 'uvx',
      args: ['mcp-server'],
    })
  })

  it.each([
    [['--idle-timeout', 'soon'], '--idle-timeout'],
    [['--idle-timeout', '0'], '--idle-timeout'],
    [['--stop-grace=-1s'], '--stop-grace'],
    [['--heartbeat', '0'], '--heartbeat'],
    [['--heartbeat', '30d'], '--heartbeat'],
    [['--max-line', 'big'], '--max-line'],
    [['--log-max-bytes', '1tb'], '--log-max-bytes'],
    [['--port', 'eighty'], '--port'],
    [['--port=-1'], '--port'],
    [['--port', '70000'], '--port'],
    [['--log-max-events', '1.5'], '--log-max-events'],
    [['--ready-fd', 'x'], '--ready-fd'],
    [['--log-level', 'loud'], '--log-level'],
  ])('refuses %j', (flags, name) => {
    expect(usageError(['--session', 's', ...flags, '--', 'cmd'])).toContain(name)
  })

  it('needs a command', () => {
    expect(usageError(['--session', 's'])).toMatch(/missing the server command/)
    expect(usageError(['--session', 's', '--'])).toMatch(/missing the server command/)
  })

  it('needs a session', () => {
    expect(usageError(['--', 'cmd'])).toMatch(/missing --session/)
    expect(usageError(['--session', '', '--', 'cmd'])).toMatch(/missing --session/)
  })

  it("needs the secret's verifier", () => {
    expect(usageError(['--session', 's', '--', 'cmd'], { PATH: '/bin' })).toMatch(/verifier/)
    expect(usageError(['--session', 's', '--', 'cmd'], { [VERIFIER_ENV]: '' })).toMatch(/verifier/)
    const blank = join(dir, 'blank')
    writeFileSync(blank, '\n')
    expect(usageError(['--session', 's', '--verifier-file', blank, '--', 'cmd'], {})).toMatch(
      /verifier/
    )
  })

  it('reads the verifier from --verifier-file, trimmed, before the environment', () => {
    const file = join(dir, 'secret')
    writeFileSync(file, 'from-file\n')
    expect(parse(['--session', 's', '--verifier-file', file, '--', 'cmd'], {}).verifier).toBe(
      'from-file'
    )
    const options = parse(['--session', 's', '--verifier-file', file, '--', 'cmd'])
    expect(options.verifier).toBe('from-file')
    expect(options.env).not.toHaveProperty(VERIFIER_ENV)
  })

  it('removes the verifier from the server environment and leaves the rest', () => {
    const source = { ...env, OTHER: 'kept' }
    const options = parse(['--session', 's', '--', 'cmd'], source)
    expect(options.env).toEqual({ PATH: '/usr/bin', HOME: '/home/x', OTHER: 'kept' })
    expect(source[VERIFIER_ENV]).toBe('s3cret')
  })

  it('passes everything after -- to the server, options included', () => {
    const options = parse(['--session', 's', '--', 'node', '--port', '1', '-h', '--', 'x'])
    expect(options.command).toBe('node')
    expect(options.args).toEqual(['--port', '1', '-h', '--', 'x'])
    expect(options.port).toBe(8080)
  })

  it('answers --help with the usage text', () => {
    expect(usageError(['--help'])).toMatch(/^Usage: ferry-sidecar/)
    expect(usageError(['-h'])).toMatch(/^Usage: ferry-sidecar/)
  })

  it('refuses unknown options', () => {
    expect(() => parse(['--session', 's', '--nope', '--', 'cmd'])).toThrow(/nope/)
  })
})

describe('sidecarSettingsArgs', () => {
  it('gives options the parser reads back as the same settings', () => {
    const settings = {
      idleTimeoutMs: 90_000,
      stopGraceMs: 1500,
      maxLineBytes: 2048,
      maxPayload: 4096,
      heartbeatMs: 7000,
      eventLog: { maxEvents: 12, maxBytes: 3000, maxAgeMs: 45_000 },
      logLevel: 'warn' as const,
    }
    const options = parseSidecarArgs(
      ['--session', 's', ...sidecarSettingsArgs(settings), '--', 'cmd'],
      { [VERIFIER_ENV]: 'v' }
    )
    expect(options).toMatchObject(settings)
  })
})

describe('parseHostArgs', () => {
  it('listens on 127.0.0.1 and any free port by default', () => {
    expect(parseHostArgs([])).toEqual({ host: '127.0.0.1', port: 0, logLevel: 'info' })
    expect(parseHostArgs(['--port', '9000', '--log-level', 'warn'])).toEqual({
      host: '127.0.0.1',
      port: 9000,
      logLevel: 'warn',
    })
  })

  it('listens on a Unix socket given by an absolute path', () => {
    expect(parseHostArgs(['--socket', '/run/ferry/s.sock'])).toMatchObject({
      socket: '/run/ferry/s.sock',
    })
  })

  it.each([
    [['--port', '65536'], '--port'],
    [['--log-level', 'loud'], '--log-level'],
    [['--socket', 'relative.sock'], '--socket'],
    [['--socket', '/s.sock', '--port', '80'], '--socket'],
  ])('refuses %j', (flags, name) => {
    expect(() => parseHostArgs(flags)).toThrow(UsageError)
    expect(() => parseHostArgs(flags)).toThrow(name)
  })

  it('takes no server command: sessions come over the IPC channel', () => {
    expect(() => parseHostArgs(['--', 'cmd'])).toThrow()
  })
})
