/** @module Tests for per-session sidecar secret derivation. */
import { describe, expect, it } from 'vitest'
import { Keyring, encodeBase64url } from './keyring.ts'
import { deriveSidecarSecret } from './sidecar-secret.ts'

const entry = (id: string) => ({
  id,
  secret: encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(32))),
})

describe('deriveSidecarSecret', () => {
  it('is deterministic per key and session, and differs across sessions and keys', async () => {
    const a = entry('ka')
    const b = entry('kb')
    const ring = await Keyring.fromJSON({ keys: [a, b] })
    const again = await Keyring.fromJSON({ keys: [a] }) // another replica, same key
    const s1 = await deriveSidecarSecret(ring, 'ka', 'ferry-aaaaaaaaaaaaaaaa')
    expect(s1).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await deriveSidecarSecret(ring, 'ka', 'ferry-aaaaaaaaaaaaaaaa')).toBe(s1)
    expect(await deriveSidecarSecret(again, 'ka', 'ferry-aaaaaaaaaaaaaaaa')).toBe(s1)
    expect(await deriveSidecarSecret(ring, 'ka', 'ferry-bbbbbbbbbbbbbbbb')).not.toBe(s1)
    expect(await deriveSidecarSecret(ring, 'kb', 'ferry-aaaaaaaaaaaaaaaa')).not.toBe(s1)
  })

  it('is not the raw secret or a plain HMAC under it (HKDF-separated)', async () => {
    const a = entry('ka')
    const ring = await Keyring.fromJSON({ keys: [a] })
    const raw = Uint8Array.from(atob(a.secret.replace(/-/g, '+').replace(/_/g, '/')), (c) =>
      c.charCodeAt(0)
    )
    const rawKey = await globalThis.crypto.subtle.importKey(
      'raw',
      raw,
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign']
    )
    const plain = await globalThis.crypto.subtle.sign(
      'HMAC',
      rawKey,
      new TextEncoder().encode('ferry-aaaaaaaaaaaaaaaa')
    )
    const derived = await deriveSidecarSecret(ring, 'ka', 'ferry-aaaaaaaaaaaaaaaa')
    expect(derived).not.toBe(encodeBase64url(new Uint8Array(plain)))
    expect(derived).not.toBe(a.secret)
  })

  it('throws for a key id that is not in the keyring', async () => {
    const ring = await Keyring.fromJSON({ keys: [entry('ka')] })
    await expect(deriveSidecarSecret(ring, 'kz', 'ferry-aaaaaaaaaaaaaaaa')).rejects.toThrow(
      /Unknown keyring key id: "kz"/
    )
  })
})
