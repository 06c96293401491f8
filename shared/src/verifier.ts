/**
 * @module
 * The sidecar never holds the per-session secret, only its verifier: the
 * base64url SHA-256 of the secret. The verifier is what a workload spec carries
 * (a Job's environment is readable by anyone who may read Jobs), and it is
 * useless for connecting; the bridge presents the secret itself at the upgrade.
 */

const toBase64Url = (bytes: Uint8Array) => {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}

/** The verifier of a per-session secret. */
export const sidecarVerifier = async (secret: string): Promise<string> =>
  toBase64Url(
    new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(secret)))
  )
