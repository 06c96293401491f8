/**
 * @module
 * The checks every MCP HTTP request passes before it reaches a session: Host and
 * Origin (DNS rebinding), Accept, Content-Type and `MCP-Protocol-Version`. Each
 * failure is a {@link FerryHTTPError} with the status the design's error table names.
 */
import { ErrorCode } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'

/** Protocol revisions of the legacy (session) era Ferry serves, newest first. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const
/** What a request without `MCP-Protocol-Version` is taken to speak. */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26'

const LOOPBACK_HOSTNAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export const isLoopbackHost = (host: string) =>
  LOOPBACK_HOSTNAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host)

/** Host and Origin policy, fixed at start-up. */
export interface OriginPolicy {
  /** Host header values (hostname, or hostname:port) accepted; undefined = any. */
  allowedHosts: ReadonlySet<string> | undefined
  /** Whether the bridge listens on loopback only: then only loopback hosts and origins pass. */
  loopbackOnly: boolean
  /** Origins allowed besides loopback ones; `*` allows every origin. */
  allowedOrigins: ReadonlySet<string>
}

export const createOriginPolicy = (options: {
  host: string
  allowedHosts: string[]
  allowedOrigins: string[]
}): OriginPolicy => {
  const loopbackOnly = isLoopbackHost(options.host)
  return {
    loopbackOnly,
    allowedHosts: options.allowedHosts.length
      ? new Set(options.allowedHosts.map((h) => h.toLowerCase()))
      : undefined,
    allowedOrigins: new Set(options.allowedOrigins.map((o) => o.toLowerCase())),
  }
}

const hostnameOf = (host: string) => {
  const lower = host.toLowerCase()
  if (lower.startsWith('[')) return lower.slice(0, lower.indexOf(']') + 1)
  const colon = lower.lastIndexOf(':')
  return colon === -1 ? lower : lower.slice(0, colon)
}

const forbidden = (message: string) =>
  new FerryHTTPError(403, ErrorCode.InvalidRequest, `Forbidden: ${message}`)

/** Rejects requests whose Host or Origin could come from a DNS-rebinding page. */
export const checkHostAndOrigin = (
  policy: OriginPolicy,
  host: string | undefined,
  origin: string | undefined
): void => {
  if (host !== undefined) {
    const lower = host.toLowerCase()
    const name = hostnameOf(lower)
    const allowed = policy.allowedHosts
      ? policy.allowedHosts.has(lower) || policy.allowedHosts.has(name)
      : !policy.loopbackOnly || isLoopbackHost(name)
    if (!allowed) throw forbidden(`Host ${host} is not allowed`)
  }
  if (origin === undefined || policy.allowedOrigins.has('*')) return
  const lower = origin.toLowerCase()
  if (policy.allowedOrigins.has(lower)) return
  let originHost: string
  try {
    originHost = new URL(lower).host
  } catch {
    throw forbidden(`Origin ${origin} is not allowed`)
  }
  // Same-origin requests are fine; so are local tools (e.g. the MCP Inspector)
  // when the bridge itself only listens on loopback.
  if (host !== undefined && originHost === host.toLowerCase()) return
  if (policy.loopbackOnly && isLoopbackHost(hostnameOf(originHost))) return
  throw forbidden(`Origin ${origin} is not allowed`)
}

const accepts = (accept: string, type: string) => {
  const [major] = type.split('/')
  return accept.split(',').some((part) => {
    const [range = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase())
    // RFC 9110 §12.4.2: a weight of 0 means "not acceptable".
    if (params.some((p) => /^q=0(\.0{0,3})?$/.test(p))) return false
    return range === type || range === '*/*' || range === `${major}/*`
  })
}

/**
 * Whether an Accept header allows both JSON and SSE answers. A client sends the same header on
 * every POST, so the answer for the last one is kept: parsing it is most of this check's cost.
 */
const postAcceptable = (() => {
  let last: string | undefined
  let lastResult = false
  return (accept: string) => {
    if (accept !== last) {
      lastResult = accepts(accept, 'application/json') && accepts(accept, 'text/event-stream')
      last = accept
    }
    return lastResult
  }
})()

/** POST must accept both JSON and SSE answers: the bridge picks one per request. */
export const checkPostAccept = (accept: string | undefined): void => {
  if (!accept || !postAcceptable(accept)) {
    throw new FerryHTTPError(
      406,
      ErrorCode.InvalidRequest,
      'Not Acceptable: Client must accept both application/json and text/event-stream'
    )
  }
}

export const checkGetAccept = (accept: string | undefined): void => {
  if (!accept || !accepts(accept, 'text/event-stream')) {
    throw new FerryHTTPError(
      406,
      ErrorCode.InvalidRequest,
      'Not Acceptable: Client must accept text/event-stream'
    )
  }
}

export const checkContentType = (contentType: string | undefined): void => {
  const type = contentType?.split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') {
    throw new FerryHTTPError(
      415,
      ErrorCode.InvalidRequest,
      'Unsupported Media Type: Content-Type must be application/json'
    )
  }
}

/**
 * Validates `MCP-Protocol-Version`. Unknown revisions, including the sessionless
 * 2026-07-28, get that revision's unsupported-version answer (-32022 with
 * `data.supported`), so dual-era clients fall back to `initialize`.
 */
export const checkProtocolVersion = (version: string | undefined): string => {
  if (version === undefined) return DEFAULT_PROTOCOL_VERSION
  if ((SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(version)) return version
  throw new FerryHTTPError(
    400,
    ErrorCode.UnsupportedProtocolVersion,
    `Bad Request: Unsupported protocol version ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    { data: { supported: [...SUPPORTED_PROTOCOL_VERSIONS], requested: version } }
  )
}

/** SEP-1699 priming events (an id with empty data) confuse clients older than 2025-11-25. */
export const supportsPriming = (negotiatedVersion: string) => negotiatedVersion >= '2025-11-25'
