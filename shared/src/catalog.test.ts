import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest'
import { CatalogError, defaultCatalog, loadCatalogFile, parseCatalog } from './catalog.ts'
import { parseDuration, parseSize } from './units.ts'
import type { BridgeSettings, Catalog, LocalServerConfig, ServerConfig } from './catalog.ts'

const MINIMAL = `
servers:
  everything:
    runtime: local
    command: node
`

/** A minimal valid catalog with `extra` merged into the `everything` server. */
const withServer = (extra: string): string => `${MINIMAL}${indent(extra, 4)}\n`
/** A minimal valid catalog with a `bridge:` section. */
const withBridge = (bridge: string): string => `bridge:\n${indent(bridge, 2)}\n${MINIMAL}`
const indent = (text: string, spaces: number): string =>
  text
    .trim()
    .split('\n')
    .map((line) => ' '.repeat(spaces) + line)
    .join('\n')

/** Parses text that must be invalid and returns the issues. */
const issuesOf = (text: string): { path: string; message: string }[] => {
  try {
    parseCatalog(text, 'catalog.yaml')
  } catch (error) {
    expect(error).toBeInstanceOf(CatalogError)
    return (error as CatalogError).issues
  }
  throw new Error('expected the catalog to be rejected')
}

const MIB = 1024 * 1024

describe('parseDuration', () => {
  it.each([
    [0, 0],
    [1500, 1500],
    ['1000', 1000],
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    [' 10 S ', 10_000],
    ['2H', 7_200_000],
  ])('parses %j as %d ms', (input, expected) => {
    expect(parseDuration(input)).toBe(expected)
  })

  it.each(['', 'abc', '10x', '-5s', '5 m s', '1e3', 's', '1,5s'])('rejects %j', (input) => {
    expect(() => parseDuration(input)).toThrow(/expected a duration like "30s"/)
  })

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects the number %d', (input) => {
    expect(() => parseDuration(input)).toThrow(RangeError)
  })
})

describe('parseSize', () => {
  it.each([
    [0, 0],
    [1024, 1024],
    ['2048', 2048],
    ['100b', 100],
    ['512kb', 512 * 1024],
    ['4mb', 4 * MIB],
    ['4MB', 4 * MIB],
    ['4MiB', 4 * MIB],
    ['1gb', 1024 * MIB],
    ['1.5kb', 1536],
    ['16 mb', 16 * MIB],
  ])('parses %j as %d bytes', (input, expected) => {
    expect(parseSize(input)).toBe(expected)
  })

  it.each(['', 'mb', '4tb', '4 m b', '-1kb', 'lots'])('rejects %j', (input) => {
    expect(() => parseSize(input)).toThrow(/expected a size like "4mb"/)
  })

  it('rejects negative and non-finite numbers', () => {
    expect(() => parseSize(-1)).toThrow(RangeError)
    expect(() => parseSize(Number.POSITIVE_INFINITY)).toThrow(RangeError)
  })
})

describe('parseCatalog defaults', () => {
  it('fills every default and resolves server timeouts from the bridge', () => {
    const catalog = parseCatalog(MINIMAL)
    expect(catalog).toEqual({
      bridge: {
        host: '127.0.0.1',
        port: 8080,
        allowedOrigins: [],
        allowedHosts: ['localhost', '127.0.0.1', '[::1]'],
        bodyLimit: 4 * MIB,
        maxSessions: 1000,
        sessionMaxAge: 24 * 3_600_000,
        startTimeout: 30_000,
        idleTimeout: 15 * 60_000,
        sse: { keepAlive: 15_000, retry: 1000, pollAfter: 0 },
        connection: {
          idleClose: 60_000,
          dialTimeout: 5000,
          heartbeat: 15_000,
          maxPayload: 16 * MIB,
        },
        local: { maxConcurrentStarts: availableParallelism() + 1 },
        kubernetes: { sweepInterval: 60_000 },
        shutdownGrace: 10_000,
        drainDelay: 1000,
        logLevel: 'info',
        auth: { mode: 'none', allowUnauthenticated: false },
        limits: {
          maxSessions: 0,
          maxSessionsPerPrincipal: 20,
          maxSessionsPerServer: 0,
          sessionRate: { perMinute: 60, burst: 20 },
          maxInFlightPerSession: 64,
          maxStreamsPerSession: 16,
          sessionCount: { refreshInterval: 5000, maxUncounted: 10 },
        },
      },
      servers: {
        everything: {
          runtime: 'local',
          command: 'node',
          args: [],
          env: {},
          inheritEnv: true,
          sidecar: 'shared',
          idleTimeout: 15 * 60_000,
          startTimeout: 30_000,
          maxLineBytes: 16 * MIB,
          stopGrace: 5000,
          eventLog: { maxEvents: 1000, maxBytes: 8 * MIB, maxAge: 10 * 60_000 },
        },
      },
    })
    expect(catalog.defaultServer).toBeUndefined()
    expect(catalog.bridge.publicUrl).toBeUndefined()
    expect((catalog.servers.everything as LocalServerConfig).cwd).toBeUndefined()
  })

  it('prefers per-server timeouts and falls back to changed bridge defaults', () => {
    const catalog = parseCatalog(`
bridge: { idleTimeout: 1h, startTimeout: 10s }
servers:
  a: { runtime: local, command: a, idleTimeout: 2m }
  b: { runtime: local, command: b, startTimeout: 90000 }
`)
    expect(catalog.servers.a).toMatchObject({ idleTimeout: 120_000, startTimeout: 10_000 })
    expect(catalog.servers.b).toMatchObject({ idleTimeout: 3_600_000, startTimeout: 90_000 })
  })

  it('keeps explicit values', () => {
    const catalog = parseCatalog(`
bridge:
  host: 0.0.0.0
  port: 0
  publicUrl: https://mcp.example.com/
  bodyLimit: 1mb
  maxSessions: 0
  logLevel: debug
  sse: { pollAfter: 30s, retry: 0 }
  connection: { maxPayload: 1gb }
  local: { maxConcurrentStarts: 0 }
  shutdownGrace: 0
defaultServer: gh
servers:
  gh:
    runtime: local
    command: npx
    args: [-y, '@modelcontextprotocol/server-github']
    env: { GITHUB_TOKEN: secret, PORT: '3000' }
    inheritEnv: false
    cwd: /srv
    maxLineBytes: 512kb
    stopGrace: 0
    eventLog: { maxEvents: 5, maxBytes: 1kb, maxAge: 30s }
`)
    expect(catalog.bridge).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      publicUrl: 'https://mcp.example.com',
      bodyLimit: MIB,
      maxSessions: 0,
      logLevel: 'debug',
      sse: { keepAlive: 15_000, retry: 0, pollAfter: 30_000 },
      connection: { maxPayload: 1024 * MIB, dialTimeout: 5000 },
      local: { maxConcurrentStarts: 0 },
      shutdownGrace: 0,
    })
    expect(catalog.defaultServer).toBe('gh')
    expect(catalog.servers.gh).toMatchObject({
      args: ['-y', '@modelcontextprotocol/server-github'],
      env: { GITHUB_TOKEN: 'secret', PORT: '3000' },
      inheritEnv: false,
      cwd: '/srv',
      maxLineBytes: 512 * 1024,
      stopGrace: 0,
      eventLog: { maxEvents: 5, maxBytes: 1024, maxAge: 30_000 },
    })
  })

  it('has parsed output types with resolved timeouts', () => {
    const catalog = parseCatalog(MINIMAL)
    expectTypeOf(catalog).toEqualTypeOf<Catalog>()
    expectTypeOf(catalog.bridge).toEqualTypeOf<BridgeSettings>()
    expectTypeOf(catalog.bridge.bodyLimit).toEqualTypeOf<number>()
    expectTypeOf(catalog.bridge.allowedHosts).toEqualTypeOf<string[]>()
    expectTypeOf<ServerConfig['idleTimeout']>().toEqualTypeOf<number>()
    expectTypeOf<LocalServerConfig['startTimeout']>().toEqualTypeOf<number>()
    expectTypeOf<LocalServerConfig['runtime']>().toEqualTypeOf<'local'>()
  })
})

describe('durations and sizes in the catalog', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    [1234, 1234],
  ])('accepts idleTimeout %j', (value, expected) => {
    const catalog = parseCatalog(withServer(`idleTimeout: ${JSON.stringify(value)}`))
    expect(catalog.servers.everything?.idleTimeout).toBe(expected)
  })

  it.each([['4mb'], ['4MB'], ['4096kb'], [4 * MIB]])('accepts maxLineBytes %j', (value) => {
    const catalog = parseCatalog(withServer(`maxLineBytes: ${JSON.stringify(value)}`))
    expect(catalog.servers.everything?.maxLineBytes).toBe(4 * MIB)
  })

  it.each(['"soon"', '"10x"', '-5', 'true', '[1]', '"-1s"'])(
    'rejects idleTimeout %s with the expected forms',
    (value) => {
      expect(issuesOf(withServer(`idleTimeout: ${value}`))).toEqual([
        {
          path: 'servers.everything.idleTimeout',
          message: 'expected a duration like "30s", "15m" or milliseconds',
        },
      ])
    }
  )

  it.each(['"big"', '"4tb"', '-1', 'false'])('rejects bodyLimit %s', (value) => {
    expect(issuesOf(withBridge(`bodyLimit: ${value}`))).toEqual([
      { path: 'bridge.bodyLimit', message: 'expected a size like "4mb", "512kb" or bytes' },
    ])
  })

  it('rejects zero where it makes no sense but allows it where documented', () => {
    expect(issuesOf(withBridge('sse: { keepAlive: 0 }'))).toEqual([
      { path: 'bridge.sse.keepAlive', message: 'must be greater than 0' },
    ])
    expect(issuesOf(withBridge('bodyLimit: 0'))).toEqual([
      { path: 'bridge.bodyLimit', message: 'must be greater than 0' },
    ])
    expect(parseCatalog(withBridge('sse: { pollAfter: 0 }')).bridge.sse.pollAfter).toBe(0)
  })

  it('rejects timer durations Node.js cannot schedule', () => {
    const [issue, ...rest] = issuesOf(withBridge('idleTimeout: 30d'))
    expect(rest).toEqual([])
    expect(issue?.path).toBe('bridge.idleTimeout')
    expect(issue?.message).toMatch(/at most 2147483647ms/)
    expect(parseCatalog(withBridge('sessionMaxAge: 30d')).bridge.sessionMaxAge).toBe(
      30 * 86_400_000
    )
  })
})

describe('bridge settings', () => {
  it('defaults allowedHosts to localhost names only when bound to loopback', () => {
    expect(parseCatalog(withBridge('host: localhost')).bridge.allowedHosts).toEqual([
      'localhost',
      '127.0.0.1',
      '[::1]',
    ])
    expect(parseCatalog(withBridge('host: "::1"')).bridge.allowedHosts).toHaveLength(3)
    expect(parseCatalog(withBridge('host: 0.0.0.0')).bridge.allowedHosts).toEqual([])
    expect(parseCatalog(withBridge('allowedHosts: []')).bridge.allowedHosts).toEqual([])
    expect(
      parseCatalog(withBridge('allowedHosts: [MCP.example.com, "[::1]:8080"]')).bridge.allowedHosts
    ).toEqual(['mcp.example.com', '[::1]:8080'])
  })

  it('normalises allowed origins and accepts an explicit wildcard', () => {
    const catalog = parseCatalog(
      withBridge('allowedOrigins: ["HTTPS://App.Example.com:443", "http://localhost:3000", "*"]')
    )
    expect(catalog.bridge.allowedOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:3000',
      '*',
    ])
  })

  it('rejects malformed origins, hosts and public URLs', () => {
    expect(
      issuesOf(
        withBridge(`
allowedOrigins: [https://ok.example.com, "https://x.example.com/path", example.com]
allowedHosts: ["::1", "https://x"]
publicUrl: ftp://mcp.example.com
`)
      ).map((issue) => issue.path)
    ).toEqual([
      'bridge.publicUrl',
      'bridge.allowedOrigins[1]',
      'bridge.allowedOrigins[2]',
      'bridge.allowedHosts[0]',
      'bridge.allowedHosts[1]',
    ])
  })

  it('rejects bad numbers and enum values with readable messages', () => {
    expect(issuesOf(withBridge('port: 80.5\nmaxSessions: -1\nlogLevel: verbose'))).toEqual([
      { path: 'bridge.port', message: 'expected an integer, got 80.5' },
      { path: 'bridge.maxSessions', message: 'must be at least 0' },
      {
        path: 'bridge.logLevel',
        message:
          'expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "verbose"',
      },
    ])
    expect(issuesOf(withBridge('port: 70000'))).toEqual([
      { path: 'bridge.port', message: 'must be at most 65535' },
    ])
    expect(
      issuesOf(withBridge('local: { maxConcurrentStarts: -1 }')).concat(
        issuesOf(withBridge('local: { maxConcurrentStarts: 2.5 }'))
      )
    ).toEqual([
      { path: 'bridge.local.maxConcurrentStarts', message: 'must be at least 0' },
      { path: 'bridge.local.maxConcurrentStarts', message: 'expected an integer, got 2.5' },
    ])
  })
})

describe('validation errors', () => {
  it('reports one issue per bad field, each with its dotted path', () => {
    const issues = issuesOf(`
bridge:
  port: http
servers:
  github:
    runtime: local
    command: npx
    idleTimeout: soon
    eventLog:
      maxEvents: 0
`)
    expect(issues).toEqual([
      { path: 'bridge.port', message: 'expected a number, got "http"' },
      {
        path: 'servers.github.idleTimeout',
        message: 'expected a duration like "30s", "15m" or milliseconds',
      },
      { path: 'servers.github.eventLog.maxEvents', message: 'must be at least 1' },
    ])
  })

  it('reports a field failing several checks only once', () => {
    expect(issuesOf(withServer('eventLog: { maxEvents: 0.5 }'))).toEqual([
      { path: 'servers.everything.eventLog.maxEvents', message: 'expected an integer, got 0.5' },
    ])
  })

  it('rejects unknown keys, one issue each, suggesting the likely field', () => {
    expect(
      issuesOf(`
bridge:
  idelTimeout: 5m
  colour: blue
servers:
  a:
    runtime: local
    command: x
    eventLog: { max_events: 3 }
serverz: {}
`)
    ).toEqual([
      { path: 'bridge.idelTimeout', message: 'unknown field (did you mean "idleTimeout"?)' },
      { path: 'bridge.colour', message: 'unknown field' },
      {
        path: 'servers.a.eventLog.max_events',
        message: 'unknown field (did you mean "maxEvents"?)',
      },
      { path: 'serverz', message: 'unknown field (did you mean "servers"?)' },
    ])
  })

  it('requires command and a known runtime', () => {
    expect(
      issuesOf(`
servers:
  a: { command: x }
  b: { runtime: docker, command: x }
  c: { runtime: local }
  d: { runtime: local, command: "  " }
  e: null
`)
    ).toEqual([
      { path: 'servers.a.runtime', message: 'required (one of "local", "kubernetes")' },
      { path: 'servers.b.runtime', message: 'expected one of "local", "kubernetes", got "docker"' },
      { path: 'servers.c.command', message: 'required' },
      { path: 'servers.d.command', message: 'must not be empty' },
      { path: 'servers.e', message: 'expected a mapping, got an empty value' },
    ])
  })

  it('explains that YAML numbers and booleans must be quoted in env and args', () => {
    expect(
      issuesOf(withServer('env: { PORT: 3000, "A=B": x }\nargs: [--port, 3000, true]'))
    ).toEqual([
      {
        path: 'servers.everything.args[1]',
        message: 'expected a string, got 3000 (quote numbers and booleans in YAML, e.g. "3000")',
      },
      {
        path: 'servers.everything.args[2]',
        message: 'expected a string, got true (quote numbers and booleans in YAML, e.g. "3000")',
      },
      {
        path: 'servers.everything.env.PORT',
        message: 'expected a string, got 3000 (quote numbers and booleans in YAML, e.g. "3000")',
      },
      {
        path: 'servers.everything.env["A=B"]',
        message: 'environment variable names must be non-empty and contain no "="',
      },
    ])
  })

  it('requires a mapping with at least one server', () => {
    expect(issuesOf('')).toEqual([
      { path: '', message: 'the catalog is empty; it needs at least a "servers" mapping' },
    ])
    expect(issuesOf('- a\n- b')).toEqual([{ path: '', message: 'expected a mapping, got a list' }])
    expect(issuesOf('bridge: {}')).toEqual([{ path: 'servers', message: 'required' }])
    expect(issuesOf('servers: {}')).toEqual([
      { path: 'servers', message: 'at least one server is required' },
    ])
  })
})

describe('server names', () => {
  it.each(['a', '0', 'my-server', 'github2', `a${'b'.repeat(30)}c`])('accepts %j', (name) => {
    const catalog = parseCatalog(`servers:\n  ${name}: { runtime: local, command: x }\n`)
    expect(Object.keys(catalog.servers)).toEqual([name])
  })

  it.each(['mcp', 'healthz', 'readyz', 'metrics', '.well-known', '.well-known-x'])(
    'rejects the reserved name %j',
    (name) => {
      expect(issuesOf(`servers:\n  "${name}": { runtime: local, command: x }\n`)).toEqual([
        {
          path: expect.stringContaining('servers'),
          message: `server name "${name}" is reserved for the bridge's own routes`,
        },
      ])
    }
  )

  it.each(['GitHub', '-lead', 'trail-', 'under_score', 'dot.ted', 'a b', `a${'b'.repeat(31)}c`])(
    'rejects the invalid name %j',
    (name) => {
      const issues = issuesOf(`servers:\n  "${name}": { runtime: local, command: x }\n`)
      expect(issues).toHaveLength(1)
      expect(issues[0]?.message).toMatch(/^invalid server name .*lowercase letters, digits and "-"/)
    }
  )

  it('uses bracket notation for names that are not plain path segments', () => {
    expect(issuesOf('servers:\n  "a b": { runtime: local, command: x }\n')[0]?.path).toBe(
      'servers["a b"]'
    )
    expect(issuesOf('servers:\n  GitHub: { runtime: local, command: x }\n')[0]?.path).toBe(
      'servers.GitHub'
    )
  })

  it('reports name problems alongside other mistakes', () => {
    expect(
      issuesOf('bridge: { port: 1.5 }\nservers:\n  MCP: { runtime: local, command: "" }\n')
    ).toEqual([
      { path: 'bridge.port', message: 'expected an integer, got 1.5' },
      { path: 'servers.MCP.command', message: 'must not be empty' },
      { path: 'servers.MCP', message: expect.stringMatching(/^invalid server name "MCP"/) },
    ])
  })
})

describe('defaultServer', () => {
  it('must name a defined server', () => {
    expect(issuesOf(`defaultServer: github\n${MINIMAL}`)).toEqual([
      {
        path: 'defaultServer',
        message: 'no server named "github" in servers (defined: everything)',
      },
    ])
  })

  it('is checked even when other fields are wrong', () => {
    expect(
      issuesOf(`defaultServer: nope\nbridge: { port: 1.5 }\n${MINIMAL}`).map((i) => i.path)
    ).toEqual(['bridge.port', 'defaultServer'])
  })

  it('is kept when valid', () => {
    expect(parseCatalog(`defaultServer: everything\n${MINIMAL}`).defaultServer).toBe('everything')
  })
})

describe('syntax', () => {
  it('reads JSON, including tab-indented JSON', () => {
    const json = JSON.stringify(
      {
        bridge: { port: 9000, bodyLimit: '1mb' },
        defaultServer: 'x',
        servers: { x: { runtime: 'local', command: 'node', args: ['server.js'] } },
      },
      null,
      '\t'
    )
    const catalog = parseCatalog(json, 'catalog.json')
    expect(catalog.bridge.port).toBe(9000)
    expect(catalog.bridge.bodyLimit).toBe(MIB)
    expect(catalog.servers.x?.args).toEqual(['server.js'])
  })

  it('reports YAML syntax errors with line and column', () => {
    let error: unknown
    try {
      parseCatalog('servers:\n  a: [1, 2\n  b: 3\n', '/etc/ferry/catalog.yaml')
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(CatalogError)
    const { message, issues, source } = error as CatalogError
    expect(source).toBe('/etc/ferry/catalog.yaml')
    expect(message).toMatch(/^\/etc\/ferry\/catalog\.yaml: syntax error\n/)
    expect(issues.length).toBeGreaterThan(0)
    expect(issues[0]?.message).toMatch(/^line \d+, column \d+: /)
  })

  it('reports JSON syntax errors with line and column', () => {
    expect(() => parseCatalog('{\n  "servers": {\n    "a": 1,\n  }}\n}')).toThrow(/line \d+/)
  })

  it('rejects duplicate keys', () => {
    expect(issuesOf(`${MINIMAL}servers: {}\n`)[0]?.message).toMatch(
      /^line 6, column 1: Map keys must be unique/
    )
  })

  it('reports undefined aliases as syntax errors', () => {
    expect(issuesOf('servers: *nothing')[0]?.message).toMatch(/alias/i)
  })

  it('supports YAML merge keys for shared server settings', () => {
    const catalog = parseCatalog(`
servers:
  a: &base { runtime: local, command: npx, env: { A: x } }
  b: { <<: *base, args: [b] }
`)
    expect(catalog.servers.a).toMatchObject({ command: 'npx', args: [] })
    expect(catalog.servers.b).toMatchObject({ command: 'npx', args: ['b'], env: { A: 'x' } })
  })
})

describe('CatalogError', () => {
  it('has a readable multi-line message that starts with the source', () => {
    let error: unknown
    try {
      parseCatalog(
        withBridge('port: http\nlogLevel: loud') + '    idleTimeout: soon\n',
        '/etc/ferry/catalog.yaml'
      )
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(CatalogError)
    expect(error).toBeInstanceOf(Error)
    const catalogError = error as CatalogError
    expect(catalogError.name).toBe('CatalogError')
    expect(catalogError.source).toBe('/etc/ferry/catalog.yaml')
    expect(catalogError.message).toBe(
      [
        '/etc/ferry/catalog.yaml: invalid catalog (3 problems)',
        '  - bridge.port: expected a number, got "http"',
        '  - bridge.logLevel: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "loud"',
        '  - servers.everything.idleTimeout: expected a duration like "30s", "15m" or milliseconds',
      ].join('\n')
    )
  })

  it('names the catalog generically without a source', () => {
    expect(() => parseCatalog('servers: {}')).toThrow(/^catalog: invalid catalog \(1 problem\)\n/)
  })
})

describe('loadCatalogFile', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-catalog-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('reads and validates a file', async () => {
    const path = join(dir, 'catalog.yaml')
    await writeFile(path, MINIMAL)
    const catalog = await loadCatalogFile(path)
    expect(catalog.servers.everything?.command).toBe('node')
  })

  it('names the path when the file is missing', async () => {
    const path = join(dir, 'missing.yaml')
    const error = await loadCatalogFile(path).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CatalogError)
    expect((error as CatalogError).source).toBe(path)
    expect((error as CatalogError).message).toBe(
      `${path}: cannot read the catalog\n  - file not found`
    )
  })

  it('names the path when the file is a directory', async () => {
    await expect(loadCatalogFile(dir)).rejects.toThrow(`${dir}: cannot read the catalog`)
  })

  it('names the path when the content is invalid', async () => {
    const path = join(dir, 'bad.json')
    await writeFile(path, '{"servers": {"a": {"runtime": "local"}}}')
    await expect(loadCatalogFile(path)).rejects.toThrow(
      `${path}: invalid catalog (1 problem)\n  - servers.a.command: required`
    )
  })
})

describe('defaultCatalog', () => {
  it('serves server-everything as the default server', () => {
    const args = ['/opt/ferry/node_modules/@modelcontextprotocol/server-everything/dist/index.js']
    const catalog = defaultCatalog({ everythingCommand: '/usr/bin/node', everythingArgs: args })
    expect(catalog.defaultServer).toBe('everything')
    expect(Object.keys(catalog.servers)).toEqual(['everything'])
    expect(catalog.servers.everything).toMatchObject({
      runtime: 'local',
      command: '/usr/bin/node',
      args,
      idleTimeout: 15 * 60_000,
      startTimeout: 30_000,
    })
    expect(catalog.servers.everything?.args).not.toBe(args)
    expect(catalog.bridge).toEqual(parseCatalog(MINIMAL).bridge)
  })

  it('rejects an empty command like any catalog', () => {
    expect(() => defaultCatalog({ everythingCommand: '', everythingArgs: [] })).toThrow(
      /^built-in catalog: invalid catalog/
    )
  })
})
