/**
 * @module
 * The catalog's security settings: who may use the bridge (`bridge.auth`, overridable per
 * server with `servers.<name>.auth`), which principals may start sessions of a server
 * (`servers.<name>.access`), and how much any one of them may spend (`bridge.limits`,
 * `servers.<name>.limits`).
 *
 * Every new MCP session starts a workload (a process or a Kubernetes pod), so an open bridge
 * lets anyone spend the machine or the cluster. These settings are imported into
 * `catalog.ts`; like the rest of the catalog, the JSDoc on each schema property is the
 * reference documentation for that field. This module must not import `catalog.ts` (which
 * imports it), so the few field helpers it needs are its own.
 */
import * as z from 'zod'
import { DURATION_HINT, parseDuration } from './units.ts'

// ---------------------------------------------------------------------------------------------
// Field helpers (the same conventions as catalog.ts)

const describe = (value: unknown): string => {
  if (value === null) return 'an empty value'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return JSON.stringify(value)
  return String(value)
}

/** A duration field: milliseconds or a string such as `"30s"`; parsed to milliseconds. */
const duration = (options: { allowZero?: boolean } = {}) =>
  z
    .union([z.number(), z.string()], {
      error: (issue) => (issue.input === undefined ? 'required' : DURATION_HINT),
    })
    .transform((value, ctx) => {
      let parsed: number
      try {
        parsed = parseDuration(value)
      } catch {
        ctx.addIssue({ code: 'custom', message: DURATION_HINT, input: value })
        return z.NEVER
      }
      if (!options.allowZero && parsed === 0) {
        ctx.addIssue({ code: 'custom', message: 'must be greater than 0', input: value })
        return z.NEVER
      }
      return parsed
    })

// Not `z.int()`: its failure aborts the parse, which would hide the cross-field checks below.
const integer = () =>
  z.number().refine(Number.isInteger, {
    error: (issue) => `expected an integer, got ${describe(issue.input)}`,
  })

const nonEmpty = () =>
  z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? 'required'
          : `expected a string, got ${describe(issue.input)} (quote numbers and booleans in YAML)`,
    })
    .regex(/\S/, 'must not be empty')

/**
 * An OAuth scope (RFC 6749 §3.3 `scope-token`): printable ASCII without spaces, `"` or `\`.
 * The restriction also keeps scopes safe inside `WWW-Authenticate` quoted strings.
 */
const ScopeSchema = z
  .string()
  .regex(
    /^[\x21\x23-\x5B\x5D-\x7E]+$/,
    'expected an OAuth scope: printable ASCII without spaces, quotes or backslashes'
  )

const isLoopbackHostname = (hostname: string): boolean =>
  hostname === 'localhost' ||
  hostname === '[::1]' ||
  hostname === '::1' ||
  /^127\.\d+\.\d+\.\d+$/.test(hostname)

/**
 * An absolute http(s) URL, kept exactly as written (issuers are compared as strings, and
 * `https://tenant.auth0.com/` differs from `https://tenant.auth0.com`). With `tls`, plain
 * `http` is allowed only for loopback hosts: keys, issuers and authorization servers reached
 * over cleartext could be swapped by anyone on the path.
 */
const httpUrl = (options: { tls: boolean }) =>
  z.string().superRefine((value, ctx) => {
    let url: URL | undefined
    try {
      url = new URL(value)
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hash) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected an absolute http(s) URL without fragment, like "https://id.example.com"',
        input: value,
      })
    } else if (options.tls && url.protocol === 'http:' && !isLoopbackHostname(url.hostname)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must use https (plain http is accepted only for loopback addresses)',
        input: value,
      })
    }
  })

// ---------------------------------------------------------------------------------------------
// Authentication

/** JWS algorithms the bridge accepts for access tokens: asymmetric ones only (no `HS*`, no `none`). */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const

/** One of {@link JWT_ALGORITHMS}. */
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number]

/** How clients authenticate: `none`, `bearer` (static tokens) or `jwt` (OAuth access tokens). */
export type AuthMode = 'none' | 'bearer' | 'jwt'

// 32 bytes in unpadded base64url: 43 characters, the last one carrying 2 zero bits.
const SHA256_BASE64URL = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

/** A static bearer token, stored as its hash (the bridge never needs the token itself). */
const StaticTokenSchema = z.strictObject({
  /**
   * Unpadded base64url of the SHA-256 of the token (43 characters), e.g. from
   * `hashToken(token)` in the bridge. Never the token itself. Required.
   */
  sha256: z.string().superRefine((value, ctx) => {
    if (SHA256_BASE64URL.test(value)) return
    ctx.addIssue({
      code: 'custom',
      input: value,
      message:
        value.length > 43 && /^[\x21-\x7E]+$/.test(value)
          ? 'expected the base64url SHA-256 of the token (43 characters); this looks like a token itself, which must never be stored in the catalog'
          : 'expected the unpadded base64url SHA-256 of the token (43 characters)',
    })
  }),
  /** Who presents this token: the principal id used by `access`, quotas and session ownership. Required. */
  principal: nonEmpty(),
  /** Scopes this token grants (checked against `requiredScopes` and `access.scopes`). Default `[]`. */
  scopes: z.array(ScopeSchema).default([]),
})

// Members that only private or symmetric JWKs have (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** An inline JSON Web Key Set of public keys (for tests and air-gapped setups). */
const InlineJwksSchema = z.strictObject({
  keys: z
    .array(
      z.looseObject({ kty: nonEmpty() }).superRefine((key, ctx) => {
        const secret = PRIVATE_JWK_MEMBERS.filter((member) => member in key)
        if (key.kty === 'oct' || secret.length > 0) {
          ctx.addIssue({
            code: 'custom',
            input: key,
            message: `must be a public key (found ${key.kty === 'oct' ? 'a symmetric key' : `private members ${secret.map((m) => `"${m}"`).join(', ')}`}); never put private keys in the catalog`,
          })
        }
      })
    )
    .min(1, 'must contain at least one key'),
})

const authFields = <M extends z.ZodType<AuthMode>>(mode: M) => ({
  /**
   * How clients authenticate. `none`: nobody is asked (allowed only on a loopback address unless
   * `allowUnauthenticated` is set). `bearer`: static tokens listed in `tokens`. `jwt`: OAuth 2.1
   * access tokens (JWTs) issued by `issuer`, checked against its JWKS, the audience and the
   * scopes. Default `none` for `bridge.auth`; required in a server's own `auth`.
   */
  mode,
  /**
   * With `mode: none`, serve on a non-loopback address anyway. Anyone who can reach the bridge
   * can then start workloads; the bridge warns loudly at start. Default `false`.
   */
  allowUnauthenticated: z.boolean().optional(),
  /** With `mode: bearer`: the accepted tokens, stored hashed. At least one. */
  tokens: z.array(StaticTokenSchema).optional(),
  /**
   * With `mode: jwt`: the issuer identifier, compared exactly with the token's `iss` (mind
   * trailing slashes: Auth0's ends with `/`, Entra ID's with `/v2.0`). Required.
   */
  issuer: httpUrl({ tls: true }).optional(),
  /** With `mode: jwt`: URL of the issuer's JSON Web Key Set. Required unless `jwks` is given. */
  jwksUri: httpUrl({ tls: true }).optional(),
  /** With `mode: jwt`: the public keys inline instead of `jwksUri` (tests, air-gapped setups). */
  jwks: InlineJwksSchema.optional(),
  /**
   * With `mode: jwt`: accepted `aud` values, one or a list. Default: the canonical URI of the
   * MCP endpoint a request is made to (RFC 8707), e.g. `https://mcp.example.com/github/mcp`,
   * which needs `bridge.publicUrl` on any non-loopback bridge.
   */
  audience: z.union([nonEmpty(), z.array(nonEmpty()).min(1)]).optional(),
  /** Scopes every token must carry, all of them; missing ones answer 403 `insufficient_scope`. Default `[]`. */
  requiredScopes: z.array(ScopeSchema).optional(),
  /** Scopes advertised as `scopes_supported` in the resource metadata. Default: `requiredScopes`. */
  scopesSupported: z.array(ScopeSchema).optional(),
  /** With `mode: jwt`: how far `exp` and `nbf` may be off because of clock differences. Default `60s`. */
  clockSkew: duration({ allowZero: true }).optional(),
  /**
   * With `mode: jwt`: accepted signature algorithms, a subset of `RS256`, `RS384`, `RS512`,
   * `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `ES512`, `EdDSA`, `Ed25519`. Symmetric
   * algorithms and `none` are never accepted. Default: all of those.
   */
  algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).optional(),
  /** With `mode: jwt`: the claim naming the principal (Entra ID: consider `oid`). Default `sub`. */
  principalClaim: nonEmpty().optional(),
  /**
   * With `mode: jwt`: claims holding the token's scopes, each a space-separated string or a list
   * (`scope` per RFC 9068, `scp` for Entra ID; add `roles` for app roles). Default `[scope, scp]`.
   */
  scopeClaims: z.array(nonEmpty()).min(1).optional(),
  /** With `mode: jwt`: least time between JWKS refetches caused by an unknown key id. Default `30s`. */
  jwksCooldown: duration({ allowZero: true }).optional(),
  /** With `mode: jwt`: refetch the JWKS when the cached copy is older than this. Default `10m`. */
  jwksCacheMaxAge: duration().optional(),
  /** With `mode: jwt`: give up fetching the JWKS after this long. Default `5s`. */
  jwksTimeout: duration().optional(),
  /**
   * Authorization servers clients should get tokens from, advertised in the protected resource
   * metadata (RFC 9728 `authorization_servers`). Default with `mode: jwt`: `[issuer]`.
   */
  authorizationServers: z.array(httpUrl({ tls: true })).optional(),
  /** URL of human-readable documentation, advertised as `resource_documentation`. Optional. */
  resourceDocumentation: httpUrl({ tls: false }).optional(),
  /** Human-readable name of the MCP server, advertised as `resource_name`. Optional. */
  resourceName: nonEmpty().optional(),
})

type AuthInput = {
  [K in keyof ReturnType<typeof authFields>]?: z.output<ReturnType<typeof authFields>[K]>
}

// Which optional fields each mode reads; any other one given is a mistake worth reporting.
const FIELDS_BY_MODE: Record<AuthMode, readonly (keyof AuthInput)[]> = {
  none: ['mode', 'allowUnauthenticated'],
  bearer: [
    'mode',
    'tokens',
    'requiredScopes',
    'scopesSupported',
    'authorizationServers',
    'resourceDocumentation',
    'resourceName',
  ],
  jwt: [
    'mode',
    'issuer',
    'jwksUri',
    'jwks',
    'audience',
    'requiredScopes',
    'scopesSupported',
    'clockSkew',
    'algorithms',
    'principalClaim',
    'scopeClaims',
    'jwksCooldown',
    'jwksCacheMaxAge',
    'jwksTimeout',
    'authorizationServers',
    'resourceDocumentation',
    'resourceName',
  ],
}

const checkAuth = (auth: AuthInput, ctx: z.RefinementCtx): void => {
  const mode = auth.mode
  if (mode !== 'none' && mode !== 'bearer' && mode !== 'jwt') return
  const allowed = new Set<string>(FIELDS_BY_MODE[mode])
  for (const [field, value] of Object.entries(auth)) {
    if (value === undefined || allowed.has(field)) continue
    const users = (['bearer', 'jwt'] as const).filter((m) =>
      FIELDS_BY_MODE[m].includes(field as keyof AuthInput)
    )
    ctx.addIssue({
      code: 'custom',
      path: [field],
      input: value,
      message: `only used with mode: ${users.length ? users.join(' or ') : 'none'} (this is mode: ${mode})`,
    })
  }
  if (mode === 'bearer') {
    if (!auth.tokens || auth.tokens.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['tokens'],
        input: auth.tokens,
        message: 'mode: bearer needs at least one token ({ sha256, principal, scopes })',
      })
    } else {
      const first = new Map<string, number>()
      auth.tokens.forEach((token, index) => {
        if (typeof token?.sha256 !== 'string') return
        const earlier = first.get(token.sha256)
        if (earlier === undefined) first.set(token.sha256, index)
        else
          ctx.addIssue({
            code: 'custom',
            path: ['tokens', index, 'sha256'],
            input: token.sha256,
            message: `duplicate token hash (same as tokens[${earlier}].sha256)`,
          })
      })
    }
  }
  if (mode === 'jwt') {
    if (auth.issuer === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['issuer'],
        input: undefined,
        message: 'required with mode: jwt (the token issuer, compared exactly with "iss")',
      })
    if ((auth.jwksUri === undefined) === (auth.jwks === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [auth.jwks === undefined ? 'jwksUri' : 'jwks'],
        input: auth.jwks ?? auth.jwksUri,
        message:
          auth.jwks === undefined
            ? 'required with mode: jwt (or give the keys inline in "jwks")'
            : 'give either jwksUri or jwks, not both',
      })
  }
}

/** Settings shared by the modes that protect a resource (`bearer`, `jwt`). */
export interface ProtectedResourceSettings {
  /** Scopes every token must carry. */
  requiredScopes: string[]
  /** Scopes advertised in the resource metadata (default: `requiredScopes`). */
  scopesSupported: string[]
  /** Advertised authorization servers (RFC 9728 `authorization_servers`). */
  authorizationServers: string[]
  /** Advertised `resource_documentation`. */
  resourceDocumentation?: string
  /** Advertised `resource_name`. */
  resourceName?: string
}

/** Parsed `auth` with `mode: none`. */
export interface NoAuthSettings {
  mode: 'none'
  /** Serve unauthenticated on a non-loopback address anyway. */
  allowUnauthenticated: boolean
}

/** One parsed static token. */
export interface StaticTokenSettings {
  /** Unpadded base64url SHA-256 of the token. */
  sha256: string
  principal: string
  scopes: string[]
}

/** Parsed `auth` with `mode: bearer`. */
export interface BearerAuthSettings extends ProtectedResourceSettings {
  mode: 'bearer'
  tokens: StaticTokenSettings[]
}

/** A JSON Web Key Set of public keys. */
export interface PublicJwks {
  keys: ({ kty: string } & Record<string, unknown>)[]
}

/** Parsed `auth` with `mode: jwt`; durations in milliseconds. */
export interface JwtAuthSettings extends ProtectedResourceSettings {
  mode: 'jwt'
  issuer: string
  /** Exactly one of `jwksUri` and `jwks` is set. */
  jwksUri?: string
  jwks?: PublicJwks
  /** Accepted audiences; `undefined` means the canonical URI of the requested endpoint. */
  audience?: string[]
  clockSkew: number
  algorithms: JwtAlgorithm[]
  principalClaim: string
  scopeClaims: string[]
  jwksCooldown: number
  jwksCacheMaxAge: number
  jwksTimeout: number
}

/** Parsed authentication settings, discriminated by `mode`. */
export type AuthSettings = NoAuthSettings | BearerAuthSettings | JwtAuthSettings

const toAuthSettings = (auth: AuthInput): AuthSettings => {
  const mode = auth.mode ?? 'none'
  if (mode === 'none') return { mode, allowUnauthenticated: auth.allowUnauthenticated ?? false }
  const requiredScopes = auth.requiredScopes ?? []
  const resource: ProtectedResourceSettings = {
    requiredScopes,
    scopesSupported: auth.scopesSupported ?? [...requiredScopes],
    authorizationServers: auth.authorizationServers ?? [],
    ...(auth.resourceDocumentation === undefined
      ? {}
      : { resourceDocumentation: auth.resourceDocumentation }),
    ...(auth.resourceName === undefined ? {} : { resourceName: auth.resourceName }),
  }
  if (mode === 'bearer') return { mode, tokens: auth.tokens ?? [], ...resource }
  const issuer = auth.issuer!
  return {
    mode,
    issuer,
    ...(auth.jwksUri === undefined ? {} : { jwksUri: auth.jwksUri }),
    ...(auth.jwks === undefined ? {} : { jwks: auth.jwks as PublicJwks }),
    ...(auth.audience === undefined
      ? {}
      : { audience: typeof auth.audience === 'string' ? [auth.audience] : auth.audience }),
    clockSkew: auth.clockSkew ?? 60_000,
    algorithms: auth.algorithms ?? [...JWT_ALGORITHMS],
    principalClaim: auth.principalClaim ?? 'sub',
    scopeClaims: auth.scopeClaims ?? ['scope', 'scp'],
    jwksCooldown: auth.jwksCooldown ?? 30_000,
    jwksCacheMaxAge: auth.jwksCacheMaxAge ?? 600_000,
    jwksTimeout: auth.jwksTimeout ?? 5000,
    ...resource,
    authorizationServers: auth.authorizationServers ?? [issuer],
  }
}

// Cross-field checks run even when a field is wrong, so every mistake is listed at once.
const always = { when: () => true }

const authSchema = <M extends z.ZodType<AuthMode>>(mode: M) =>
  z
    .strictObject(authFields(mode))
    .superRefine((auth, ctx) => checkAuth(auth as AuthInput, ctx), always)
    .transform((auth) => toAuthSettings(auth as AuthInput))

const MODE_ENUM = z.enum(['none', 'bearer', 'jwt'])

/** `bridge.auth`: how clients authenticate to every server that has no `auth` of its own. */
export const AuthSettingsSchema = authSchema(MODE_ENUM.default('none'))

/**
 * `servers.<name>.auth`: replaces `bridge.auth` for one server, as a whole (nothing is merged,
 * so a server's protection never depends on bridge defaults it does not show). `mode` is
 * required here, so a partial block cannot silently turn authentication off.
 */
export const ServerAuthSchema = authSchema(MODE_ENUM)

// ---------------------------------------------------------------------------------------------
// Access control

/**
 * `servers.<name>.access`: who may start (and use) sessions of this server, once
 * authenticated. `principals` and `scopes` are two ways of granting access; a principal is
 * admitted when either grants it. Without `access`, every authenticated principal is admitted.
 */
export const AccessSchema = z.strictObject({
  /** Principal ids admitted (static token `principal`, or the JWT's `principalClaim`). Optional. */
  principals: z.array(nonEmpty()).optional(),
  /** Scopes that admit a principal holding all of them. Optional. */
  scopes: z.array(ScopeSchema).min(1).optional(),
})

/** Parsed `servers.<name>.access`. */
export type AccessSettings = z.output<typeof AccessSchema>

// ---------------------------------------------------------------------------------------------
// Quotas

/** `bridge.limits.sessionRate`: a token bucket per principal for session starts. */
const SessionRateSchema = z.strictObject({
  /**
   * Session starts a principal regains per minute (the bucket's refill rate); `0` means no
   * limit. The anonymous principal of an unauthenticated endpoint is exempt. Default `60`.
   */
  perMinute: z.number().min(0).default(60),
  /** Session starts a principal may make at once (the bucket's size). Default `20`. */
  burst: integer().min(1).default(20),
})

/** `bridge.limits.sessionCount`: how cluster-wide session counts are kept (Kubernetes). */
const SessionCountSchema = z.strictObject({
  /**
   * A replica re-lists the session Jobs when its count is older than this before admitting a
   * session. Default `5s`.
   */
  refreshInterval: duration().prefault('5s'),
  /**
   * Sessions a replica may start that no listing has confirmed yet; at this many it re-lists
   * before admitting another. Bounds how far concurrent replicas can overshoot a limit:
   * at most `(replicas − 1) × maxUncounted`. Default `10`.
   */
  maxUncounted: integer().min(1).default(10),
})

/**
 * `bridge.limits`: quotas that stop one client spending the cluster. `0` turns a limit off.
 * Over a limit the bridge answers 429 with `Retry-After` and a JSON-RPC error naming it.
 */
export const LimitsSchema = z.strictObject({
  /**
   * Most concurrent sessions across every replica (from a count of the session Jobs on
   * Kubernetes, see `sessionCount`; per replica with the local runtime). `bridge.maxSessions`
   * still caps each replica. `0` means no limit. Default `0`.
   */
  maxSessions: integer().min(0).default(0),
  /**
   * Most concurrent sessions of one principal, across replicas like `maxSessions`. The anonymous
   * principal of an unauthenticated endpoint (everyone) is exempt. Default `20`.
   */
  maxSessionsPerPrincipal: integer().min(0).default(20),
  /**
   * Most concurrent sessions of each server, across replicas like `maxSessions`; a server's
   * `limits.maxSessions` overrides it. `0` means no limit. Default `0`.
   */
  maxSessionsPerServer: integer().min(0).default(0),
  /** Rate of session starts per principal, per replica. */
  sessionRate: SessionRateSchema.prefault({}),
  /** Most requests of one session awaiting their response at once, per replica. `0` means no limit. Default `64`. */
  maxInFlightPerSession: integer().min(0).default(64),
  /**
   * Most SSE streams one session holds open at once, per replica: `GET` streams (the standalone
   * stream and resumptions) and `POST` answers that stream. `0` means no limit. Default `16`.
   */
  maxStreamsPerSession: integer().min(0).default(16),
  /** How cluster-wide session counts are refreshed (Kubernetes runtime). */
  sessionCount: SessionCountSchema.prefault({}),
})

/** Parsed `bridge.limits`; durations in milliseconds. */
export type LimitsSettings = z.output<typeof LimitsSchema>

/** `servers.<name>.limits`: quotas of one server. */
export const ServerLimitsSchema = z.strictObject({
  /**
   * Most concurrent sessions of this server across replicas; overrides
   * `bridge.limits.maxSessionsPerServer`. `0` means no limit. Optional.
   */
  maxSessions: integer().min(0).optional(),
})

/** Parsed `servers.<name>.limits`. */
export type ServerLimitsSettings = z.output<typeof ServerLimitsSchema>
