/**
 * @module
 * Authentication and authorization of MCP clients: authenticators per auth mode, protected
 * resource metadata (RFC 9728), session ownership, per-server access control and start-up
 * checks. See `docs/security.md`.
 */
export { type AccessResult, accessDeniedError, checkAccess } from './access.ts'
export {
  type AuthResult,
  type Authenticator,
  type AuthenticatorOptions,
  createAuthenticator,
  createCatalogAuthenticators,
} from './authenticator.ts'
export {
  type AuthFailure,
  type AuthFailureReason,
  type ChallengeParams,
  authFailureError,
  bearerChallenge,
} from './challenge.ts'
export {
  type Principal,
  anonymousPrincipal,
  principalHash,
  principalKey,
  sameOwner,
} from './principal.ts'
export {
  type ProtectedAuthSettings,
  type ProtectedResourceMetadata,
  type ProtectedResourceRoute,
  type ProtectedResourceRoutesOptions,
  WELL_KNOWN_PREFIX,
  canonicalResourceUri,
  protectedResourceMetadata,
  protectedResourceRoutes,
  resourceForRequest,
  resourceMetadataUrl,
  wellKnownPaths,
} from './resource-metadata.ts'
export {
  type AuthStartupOptions,
  type StartupCheck,
  checkAuthStartup,
  checkCatalogAuth,
  isLoopbackHost,
} from './startup.ts'
export { StaticTokens, generateToken, hashToken } from './static-tokens.ts'
