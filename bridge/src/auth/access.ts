/**
 * @module
 * Per-server access control (`servers.<name>.access`): which authenticated principals may
 * start and use sessions of a server. `principals` and `scopes` each grant access; a
 * principal passes when either does. No `access` admits every authenticated principal.
 */
import { ErrorCode, type AccessSettings, type JSONRPCId } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'
import { bearerChallenge } from './challenge.ts'
import type { Principal } from './principal.ts'

/** The outcome of {@link checkAccess}. */
export type AccessResult =
  | { ok: true }
  | {
      ok: false
      status: 403
      message: string
      /** `WWW-Authenticate: Bearer error="insufficient_scope"` when scopes could grant access. */
      headers: Record<string, string>
    }

/**
 * Whether `principal` may use a server with these `access` rules. When the rules name scopes,
 * an authenticated principal is told which ones (403 `insufficient_scope`) so its client can
 * ask for them; `resourceMetadataUrl` is then added to the challenge.
 */
export function checkAccess(
  access: AccessSettings | undefined,
  principal: Principal,
  options: { resourceMetadataUrl?: string } = {}
): AccessResult {
  if (access === undefined) return { ok: true }
  if (access.principals?.includes(principal.id)) return { ok: true }
  if (access.scopes && access.scopes.every((scope) => principal.scopes.includes(scope)))
    return { ok: true }
  const headers: Record<string, string> = {}
  if (access.scopes && principal.method !== 'anonymous') {
    headers['www-authenticate'] = bearerChallenge({
      error: 'insufficient_scope',
      scopes: access.scopes,
      ...(options.resourceMetadataUrl === undefined
        ? {}
        : { resourceMetadata: options.resourceMetadataUrl }),
    })
  }
  return {
    ok: false,
    status: 403,
    message:
      principal.method === 'anonymous'
        ? 'this server requires an authenticated principal'
        : 'this principal is not allowed to use this server',
    headers,
  }
}

/** The HTTP error for a denial: 403 with a JSON-RPC error body. */
export function accessDeniedError(
  denied: Extract<AccessResult, { ok: false }>,
  id: JSONRPCId | null = null
): FerryHTTPError {
  return new FerryHTTPError(403, ErrorCode.InvalidRequest, `Forbidden: ${denied.message}`, {
    data: { reason: 'access_denied' },
    headers: denied.headers,
    id,
  })
}
