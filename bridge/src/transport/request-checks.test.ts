/** @module Tests for the per-request checks: Host/Origin, Accept, Content-Type, protocol version. */
import { describe, expect, it } from 'vitest'
import { ErrorCode } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'
import {
  DEFAULT_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
  checkContentType,
  checkGetAccept,
  checkHostAndOrigin,
  checkPostAccept,
  checkProtocolVersion,
  createOriginPolicy,
  isLoopbackHost,
  supportsPriming,
} from './request-checks.ts'

/** The error `run` throws; fails the test when it throws nothing or something else. */
const thrown = (run: () => unknown): FerryHTTPError => {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(FerryHTTPError)
    return error as FerryHTTPError
  }
  throw new Error('expected a FerryHTTPError, nothing was thrown')
}

const bodyOf = async (error: FerryHTTPError) =>
  (await error.toResponse().json()) as {
    jsonrpc: string
    id: unknown
    error: { code: number; message: string; data?: unknown }
  }

// What the catalog yields for the default `host: 127.0.0.1`.
const loopback = createOriginPolicy({
  host: '127.0.0.1',
  allowedHosts: ['localhost', '127.0.0.1', '[::1]'],
  allowedOrigins: [],
})
// Loopback listener, Host not checked (empty allowedHosts).
const loopbackAnyHost = createOriginPolicy({
  host: 'localhost',
  allowedHosts: [],
  allowedOrigins: [],
})
// A public listener behind a proxy.
const publicPolicy = (allowedHosts: string[], allowedOrigins: string[] = []) =>
  createOriginPolicy({ host: '0.0.0.0', allowedHosts, allowedOrigins })

const passes = (policy: ReturnType<typeof createOriginPolicy>, host?: string, origin?: string) =>
  expect(() => checkHostAndOrigin(policy, host, origin)).not.toThrow()

const forbidden = (
  policy: ReturnType<typeof createOriginPolicy>,
  host?: string,
  origin?: string
) => {
  const error = thrown(() => checkHostAndOrigin(policy, host, origin))
  expect(error.status).toBe(403)
  expect(error.code).toBe(ErrorCode.InvalidRequest)
  expect(error.message).toMatch(/^Forbidden: /)
  return error
}

describe('isLoopbackHost', () => {
  it('knows the loopback names and the whole 127/8 block', () => {
    for (const host of ['localhost', '127.0.0.1', '127.1.2.3', '[::1]', '::1']) {
      expect(isLoopbackHost(host), host).toBe(true)
    }
    for (const host of [
      'example.com',
      '10.0.0.1',
      '0.0.0.0',
      '127.0.0.1.nip.io',
      'localhost.evil',
    ]) {
      expect(isLoopbackHost(host), host).toBe(false)
    }
  })
})

describe('createOriginPolicy', () => {
  it('is loopback-only for loopback listeners and lowercases its lists', () => {
    const policy = createOriginPolicy({
      host: '127.0.0.1',
      allowedHosts: ['MCP.Example.com:8443'],
      allowedOrigins: ['HTTPS://App.Example.com'],
    })
    expect(policy.loopbackOnly).toBe(true)
    expect([...policy.allowedHosts!]).toEqual(['mcp.example.com:8443'])
    expect([...policy.allowedOrigins]).toEqual(['https://app.example.com'])
    expect(createOriginPolicy({ host: '0.0.0.0', allowedHosts: [], allowedOrigins: [] })).toEqual({
      loopbackOnly: false,
      allowedHosts: undefined,
      allowedOrigins: new Set(),
    })
    expect(
      createOriginPolicy({ host: '::1', allowedHosts: [], allowedOrigins: [] }).loopbackOnly
    ).toBe(true)
  })
})

describe('checkHostAndOrigin: Host', () => {
  it('accepts loopback hosts with and without a port by default', () => {
    for (const host of [
      'localhost',
      'localhost:8080',
      '127.0.0.1:1',
      'LOCALHOST:80',
      '[::1]',
      '[::1]:8080',
    ]) {
      passes(loopback, host)
    }
  })

  it('refuses other hosts on a loopback listener', () => {
    for (const host of [
      'evil.com',
      'evil.com:8080',
      '10.0.0.1:8080',
      'localhost.evil.com',
      '[::2]:80',
    ]) {
      forbidden(loopback, host)
    }
    expect(forbidden(loopback, 'evil.com:8080').message).toBe(
      'Forbidden: Host evil.com:8080 is not allowed'
    )
  })

  it('checks the explicit list literally: 127.0.0.2 is loopback but not listed', () => {
    forbidden(loopback, '127.0.0.2')
    passes(loopbackAnyHost, '127.0.0.2:9')
    forbidden(loopbackAnyHost, 'evil.com')
  })

  it('matches an entry without a port on any port, an entry with a port only on that port', () => {
    const policy = publicPolicy(['mcp.example.com', 'api.example.com:8443', '[2001:db8::1]'])
    passes(policy, 'mcp.example.com')
    passes(policy, 'MCP.example.com:443')
    passes(policy, 'api.example.com:8443')
    passes(policy, '[2001:db8::1]:8080')
    forbidden(policy, 'api.example.com')
    forbidden(policy, 'api.example.com:9443')
    forbidden(policy, 'localhost')
    forbidden(policy, 'evil.example.com')
  })

  it('lets any Host through a public listener without a list, and tolerates a missing Host', () => {
    passes(publicPolicy([]), 'whatever.example:1234')
    passes(loopback, undefined)
    passes(publicPolicy(['mcp.example.com']), undefined)
  })

  it('refuses malformed hosts', () => {
    forbidden(loopback, '[::1')
    forbidden(loopback, '')
  })
})

describe('checkHostAndOrigin: Origin', () => {
  it('accepts loopback origins on a loopback listener, IPv6 included', () => {
    for (const origin of [
      'http://localhost:6274',
      'http://127.0.0.1',
      'https://127.0.0.9:1',
      'http://[::1]:3000',
      'HTTP://LOCALHOST',
    ]) {
      passes(loopback, 'localhost:8080', origin)
    }
  })

  it('refuses foreign origins (DNS rebinding), even when the Host is loopback', () => {
    const error = forbidden(loopback, 'localhost:8080', 'http://evil.com')
    expect(error.message).toBe('Forbidden: Origin http://evil.com is not allowed')
    forbidden(loopback, '127.0.0.1:8080', 'http://localhost.evil.com')
    forbidden(loopback, '127.0.0.1:8080', 'http://127.0.0.1.nip.io')
    forbidden(loopback, undefined, 'https://evil.com')
  })

  it('refuses malformed and opaque origins', () => {
    for (const origin of ['null', 'not a url', '', '://x', 'http://']) {
      forbidden(loopback, 'localhost', origin)
    }
  })

  it('accepts listed origins case-insensitively, and only those', () => {
    const policy = publicPolicy(['mcp.example.com'], ['https://app.example.com'])
    passes(policy, 'mcp.example.com', 'https://app.example.com')
    passes(policy, 'mcp.example.com', 'HTTPS://APP.EXAMPLE.COM')
    forbidden(policy, 'mcp.example.com', 'https://app.example.com:8443')
    forbidden(policy, 'mcp.example.com', 'http://app.example.com')
    forbidden(policy, 'mcp.example.com', 'https://evil.com')
    // Loopback origins are only a pass on a loopback listener.
    forbidden(policy, 'mcp.example.com', 'http://localhost:3000')
  })

  it('accepts every origin with `*`, but `*` does not open the Host check', () => {
    const policy = publicPolicy(['mcp.example.com'], ['*'])
    passes(policy, 'mcp.example.com', 'https://anything.example')
    passes(policy, 'mcp.example.com', 'null')
    forbidden(policy, 'evil.com', 'https://anything.example')
    passes(
      createOriginPolicy({ host: '127.0.0.1', allowedHosts: [], allowedOrigins: ['*'] }),
      'localhost',
      'http://evil.com'
    )
  })

  it('accepts same-origin requests', () => {
    const policy = publicPolicy(['mcp.example.com'])
    passes(policy, 'mcp.example.com', 'https://mcp.example.com')
    passes(policy, 'MCP.example.com:8443', 'https://mcp.example.com:8443')
    forbidden(policy, 'mcp.example.com', 'https://mcp.example.com:8443')
    // A loopback listener behind a proxy that keeps the public Host.
    const proxied = createOriginPolicy({
      host: '127.0.0.1',
      allowedHosts: ['mcp.example.com'],
      allowedOrigins: [],
    })
    passes(proxied, 'mcp.example.com', 'https://mcp.example.com')
    passes(proxied, 'mcp.example.com', 'http://localhost:6274')
    forbidden(proxied, 'localhost:8080', 'https://mcp.example.com')
    // Same-origin needs a Host to compare with.
    forbidden(publicPolicy([]), undefined, 'https://mcp.example.com')
  })

  it('accepts a same-origin IPv6 request', () => {
    const policy = publicPolicy(['[2001:db8::1]'])
    passes(policy, '[2001:db8::1]:8080', 'http://[2001:db8::1]:8080')
    forbidden(policy, '[2001:db8::1]:8080', 'http://[2001:db8::2]:8080')
  })

  it('answers 403 with a JSON-RPC error body', async () => {
    const response = forbidden(loopback, 'evil.com').toResponse()
    expect(response.status).toBe(403)
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(await response.json()).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: ErrorCode.InvalidRequest, message: 'Forbidden: Host evil.com is not allowed' },
    })
  })
})

describe('checkPostAccept', () => {
  const ok = (accept: string) => expect(() => checkPostAccept(accept), accept).not.toThrow()
  const notAcceptable = (accept: string | undefined) => {
    const error = thrown(() => checkPostAccept(accept))
    expect(error.status).toBe(406)
    expect(error.code).toBe(ErrorCode.InvalidRequest)
    expect(error.message).toBe(
      'Not Acceptable: Client must accept both application/json and text/event-stream'
    )
  }

  it('accepts both types, in any order, case and spacing', () => {
    ok('application/json, text/event-stream')
    ok('text/event-stream,application/json')
    ok('  Application/JSON ,  TEXT/Event-Stream  ')
  })

  it('ignores parameters and q-values above zero', () => {
    ok('application/json;q=0.9, text/event-stream;q=0.1')
    ok('application/json; charset=utf-8, text/event-stream; charset=utf-8')
    ok('text/html;q=0.5, application/json;q=1.0, text/event-stream')
  })

  it('accepts wildcards', () => {
    ok('*/*')
    ok('application/*, text/*')
    ok('application/json, text/*')
    ok('*/*;q=0.8')
  })

  it('refuses when only one of the two types is acceptable', () => {
    notAcceptable('application/json')
    notAcceptable('text/event-stream')
    notAcceptable('application/*')
    notAcceptable('text/*, application/xml')
    notAcceptable('application/json, text/html')
  })

  it('refuses a missing, empty or unrelated Accept', () => {
    notAcceptable(undefined)
    notAcceptable('')
    notAcceptable('text/html')
    notAcceptable('application/jsonx, text/event-streams')
  })

  it('treats q=0 as "not acceptable" (RFC 9110 §12.4.2)', () => {
    notAcceptable('application/json, text/event-stream;q=0')
    notAcceptable('application/json;q=0, text/event-stream')
    notAcceptable('application/json;q=0.000, text/event-stream')
  })

  it('answers each header on its own when the same ones come again (the last answer is kept)', () => {
    for (let round = 0; round < 2; round++) {
      ok('application/json, text/event-stream')
      ok('application/json, text/event-stream')
      notAcceptable('application/json')
      notAcceptable('application/json')
      ok('*/*')
      notAcceptable('application/json, text/event-stream;q=0')
    }
  })
})

describe('checkGetAccept', () => {
  it('needs text/event-stream, directly or through a wildcard', () => {
    for (const accept of [
      'text/event-stream',
      'text/*',
      '*/*',
      'application/json, text/event-stream;q=0.5',
    ]) {
      expect(() => checkGetAccept(accept), accept).not.toThrow()
    }
    for (const accept of [undefined, '', 'application/json', 'application/*']) {
      const error = thrown(() => checkGetAccept(accept))
      expect(error.status).toBe(406)
      expect(error.message).toBe('Not Acceptable: Client must accept text/event-stream')
    }
  })
})

describe('checkContentType', () => {
  it('accepts application/json with or without parameters, in any case', () => {
    for (const type of [
      'application/json',
      'application/json; charset=utf-8',
      'application/json;charset=UTF-8',
      'APPLICATION/JSON',
      ' application/json ; charset=utf-8',
    ]) {
      expect(() => checkContentType(type), type).not.toThrow()
    }
  })

  it('answers 415 for anything else', () => {
    for (const type of [
      undefined,
      '',
      'text/plain',
      'text/json',
      'application/json-seq',
      'application/x-json',
    ]) {
      const error = thrown(() => checkContentType(type))
      expect(error.status).toBe(415)
      expect(error.code).toBe(ErrorCode.InvalidRequest)
      expect(error.message).toBe('Unsupported Media Type: Content-Type must be application/json')
    }
  })
})

describe('checkProtocolVersion', () => {
  it('returns each supported revision as given', () => {
    expect(SUPPORTED_PROTOCOL_VERSIONS).toEqual(['2025-11-25', '2025-06-18', '2025-03-26'])
    for (const version of SUPPORTED_PROTOCOL_VERSIONS)
      expect(checkProtocolVersion(version)).toBe(version)
  })

  it('takes a request without the header to speak 2025-03-26', () => {
    expect(DEFAULT_PROTOCOL_VERSION).toBe('2025-03-26')
    expect(checkProtocolVersion(undefined)).toBe('2025-03-26')
  })

  it('answers the sessionless 2026-07-28 with -32022 naming the supported revisions', async () => {
    const error = thrown(() => checkProtocolVersion('2026-07-28'))
    expect(error.status).toBe(400)
    expect(error.code).toBe(-32022)
    expect(error.data).toEqual({
      supported: ['2025-11-25', '2025-06-18', '2025-03-26'],
      requested: '2026-07-28',
    })
    const body = await bodyOf(error)
    expect(body.id).toBeNull()
    expect(body.error.code).toBe(ErrorCode.UnsupportedProtocolVersion)
    expect(body.error.message).toContain('2026-07-28')
    expect(body.error.message).toContain('2025-11-25, 2025-06-18, 2025-03-26')
    expect(body.error.data).toEqual(error.data)
  })

  it('refuses unknown, older and malformed revisions the same way', () => {
    for (const version of ['2024-11-05', '2025-11-26', '', 'latest', ' 2025-11-25']) {
      const error = thrown(() => checkProtocolVersion(version))
      expect(error.status).toBe(400)
      expect(error.code).toBe(ErrorCode.UnsupportedProtocolVersion)
      expect(error.data).toEqual({
        supported: [...SUPPORTED_PROTOCOL_VERSIONS],
        requested: version,
      })
    }
  })
})

describe('supportsPriming', () => {
  it('is true from 2025-11-25 on', () => {
    expect(supportsPriming('2025-03-26')).toBe(false)
    expect(supportsPriming('2025-06-18')).toBe(false)
    expect(supportsPriming('2025-11-25')).toBe(true)
    expect(supportsPriming('2026-07-28')).toBe(true)
  })
})
