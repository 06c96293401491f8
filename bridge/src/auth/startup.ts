/**
 * @module
 * Start-up checks of the auth settings, for the CLI to run before listening: an
 * unauthenticated bridge must not be reachable from other machines by accident, and a JWT
 * audience must not depend on the client-controlled `Host` header.
 */
import type { AuthSettings, Catalog } from '@ferry/shared'

/** The outcome of a start-up check: go ahead (maybe with warnings to log), or refuse. */
export type StartupCheck = { ok: true; warnings: string[] } | { ok: false; error: string }

/** Whether `host` (a bind address or a URL's host name) can only be reached from this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  return (
    bare === 'localhost' ||
    bare === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(bare) ||
    /^::ffff:127\.\d+\.\d+\.\d+$/.test(bare)
  )
}

export interface AuthStartupOptions {
  /** `bridge.publicUrl`, if set. */
  publicUrl?: string
  /** Where these settings are in the catalog, for messages. Default `bridge.auth`. */
  path?: string
}

/**
 * Checks one `auth` block against the address the bridge binds:
 *
 * - `mode: none` on a non-loopback address is refused unless `allowUnauthenticated: true`,
 *   which warns loudly instead; on loopback it warns when `publicUrl` shows a proxy in front.
 * - `mode: jwt` without `audience` on a non-loopback address needs `publicUrl`, so the
 *   expected audience is the canonical URI, not whatever `Host` a client sends.
 * - Tokens sent to a non-loopback `publicUrl` over plain http draw a warning.
 */
export function checkAuthStartup(
  settings: AuthSettings,
  host: string,
  options: AuthStartupOptions = {}
): StartupCheck {
  const path = options.path ?? 'bridge.auth'
  const warnings: string[] = []
  const loopback = isLoopbackHost(host)
  const publicHost = options.publicUrl === undefined ? undefined : new URL(options.publicUrl)

  if (settings.mode === 'none') {
    if (!loopback && !settings.allowUnauthenticated) {
      return {
        ok: false,
        error:
          `refusing to serve without authentication on ${host}, which other machines can reach: ` +
          `anyone could start workloads. Set ${path}.mode to "bearer" or "jwt", bind a loopback ` +
          `address (bridge.host: 127.0.0.1), or set ${path}.allowUnauthenticated: true to accept the risk.`,
      }
    }
    if (!loopback) {
      warnings.push(
        `WARNING: ${path}.allowUnauthenticated is set and the bridge listens on ${host}: ` +
          'ANYONE WHO CAN REACH IT CAN START WORKLOADS AND USE EVERY SERVER. Only quotas ' +
          '(bridge.limits) and the network stand in the way.'
      )
    } else if (publicHost && !isLoopbackHost(publicHost.hostname)) {
      warnings.push(
        `${path}.mode is "none" but bridge.publicUrl (${publicHost.origin}) suggests a proxy in ` +
          'front of this loopback address: whoever reaches the proxy can start workloads.'
      )
    }
    return { ok: true, warnings }
  }

  if (settings.mode === 'jwt' && settings.audience === undefined && !loopback && !publicHost) {
    return {
      ok: false,
      error:
        `${path}.mode "jwt" on ${host} needs bridge.publicUrl (or ${path}.audience): the ` +
        "expected token audience is the endpoint's canonical URI, which must not come from the " +
        "client's Host header.",
    }
  }
  if (publicHost?.protocol === 'http:' && !isLoopbackHost(publicHost.hostname)) {
    warnings.push(
      `bridge.publicUrl uses plain http: bearer tokens for ${path} cross the network in ` +
        'cleartext unless TLS ends at a proxy in front of the bridge.'
    )
  }
  return { ok: true, warnings }
}

/**
 * {@link checkAuthStartup} for the whole catalog: `bridge.auth` and every server's own
 * `auth`, plus a warning for `access` rules no principal can meet because the server is
 * unauthenticated. Errors are joined, one per line.
 */
export function checkCatalogAuth(catalog: Pick<Catalog, 'bridge' | 'servers'>): StartupCheck {
  const { host, publicUrl, auth } = catalog.bridge
  const base = publicUrl === undefined ? {} : { publicUrl }
  const results: StartupCheck[] = [checkAuthStartup(auth, host, base)]
  const warnings: string[] = []
  for (const [name, server] of Object.entries(catalog.servers)) {
    if (server.auth) {
      results.push(checkAuthStartup(server.auth, host, { ...base, path: `servers.${name}.auth` }))
    }
    const effective = server.auth ?? auth
    if (
      effective.mode === 'none' &&
      server.access &&
      !server.access.principals?.includes('anonymous')
    ) {
      warnings.push(
        `servers.${name}.access admits no one: the server is unauthenticated, so every request ` +
          'is the principal "anonymous".'
      )
    }
  }
  const errors = results.flatMap((result) => (result.ok ? [] : [result.error]))
  if (errors.length) return { ok: false, error: errors.join('\n') }
  return {
    ok: true,
    warnings: [...results.flatMap((result) => (result.ok ? result.warnings : [])), ...warnings],
  }
}
