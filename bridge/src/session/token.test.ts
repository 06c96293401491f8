/** @module Tests for sealing, opening, expiry and rotation of session tokens. */
import { describe, expect, it } from 'vitest'
import { Keyring, decodeBase64url, encodeBase64url } from './keyring.ts'
import { MAX_TOKEN_LENGTH, SessionTokenCodec, newSessionName } from './token.ts'
import type { SessionClaims } from './token.ts'

const secret = () => encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(32)))
const entry = (id: string) => ({ id, secret: secret() })

const claims = {
  sid: 'ferry-abcdefghijklmnop',
  srv: 'everything',
  rt: 'kubernetes',
  addr: 'ws://10.0.0.7:41234',
  ref: { namespace: 'ferry', job: 'ferry-abcdefghijklmnop' },
  pv: '2025-11-25',
  sub: 'sha256:0f1e2d',
}

const NOW = 1_780_000_000
const fixedClock = () => NOW

/** Replaces one byte of the token body, re-encoding canonically. */
const flipByte = (token: string, index: number): string => {
  const [kid, body] = token.split('.') as [string, string]
  const bytes = decodeBase64url(body)!
  bytes[index]! ^= 0x01
  return `${kid}.${encodeBase64url(bytes)}`
}

describe('SessionTokenCodec', () => {
  it('round-trips every field', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate(), { now: fixedClock })
    const token = await codec.seal(claims)
    const opened = await codec.open(token)
    expect(opened).toEqual<SessionClaims>({ ...claims, v: 1, iat: NOW })
    expect(await codec.open(token)).toEqual(opened) // cached path gives the same answer
  })

  it('keeps optional fields optional and an explicit iat', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate(), { now: fixedClock })
    const { ref: _ref, sub: _sub, ...minimal } = claims
    const opened = await codec.open(await codec.seal({ ...minimal, iat: NOW - 5 }))
    expect(opened).toEqual({ ...minimal, v: 1, iat: NOW - 5 })
    expect(opened).not.toHaveProperty('ref')
    expect(opened).not.toHaveProperty('sub')
  })

  it('mints distinct, URL-safe, visible-ASCII tokens of the documented shape', async () => {
    const ring = await Keyring.generate()
    const codec = new SessionTokenCodec(ring)
    const a = await codec.seal(claims)
    const b = await codec.seal(claims)
    expect(a).not.toBe(b) // fresh IV every time
    for (const token of [a, b]) {
      expect(token).toMatch(/^[\x21-\x7e]+$/)
      expect(token).toMatch(/^[A-Za-z0-9_-]{1,16}\.[A-Za-z0-9_-]+$/)
      expect(token.startsWith(`${ring.primaryId}.`)).toBe(true)
      expect(codec.keyIdOf(token)).toBe(ring.primaryId)
      expect(token).not.toContain(claims.addr) // sealed, not just signed
    }
  })

  it('refuses a token with any single byte of IV, ciphertext or tag changed', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate(), { cacheSize: 0 })
    const token = await codec.seal(claims)
    const length = decodeBase64url(token.split('.')[1]!)!.length
    const results = await Promise.all(
      Array.from({ length }, (_, i) => codec.open(flipByte(token, i)))
    )
    expect(results.every((r) => r === undefined)).toBe(true)
    expect(await codec.open(token)).toBeDefined()
  })

  it('refuses a token relabelled with another key id in the ring', async () => {
    const ring = await Keyring.fromJSON({ keys: [entry('ka'), entry('kb')] })
    const codec = new SessionTokenCodec(ring)
    const token = await codec.seal(claims)
    expect(codec.keyIdOf(token)).toBe('kb')
    expect(await codec.open(`ka${token.slice(2)}`)).toBeUndefined()
    expect(await codec.open(`kc${token.slice(2)}`)).toBeUndefined() // unknown kid
  })

  it('binds the key id as additional data, even when two ids share key material', async () => {
    const shared = secret()
    const ring = await Keyring.fromJSON({
      keys: [
        { id: 'ka', secret: shared },
        { id: 'kb', secret: shared },
      ],
    })
    const codec = new SessionTokenCodec(ring)
    const token = await codec.seal(claims)
    expect(token.startsWith('kb.')).toBe(true)
    expect(await codec.open(token)).toBeDefined()
    expect(await codec.open(`ka${token.slice(2)}`)).toBeUndefined()
  })

  it('refuses tokens from a foreign keyring, even with the same key id', async () => {
    const mine = new SessionTokenCodec(await Keyring.fromJSON({ keys: [entry('k1')] }))
    const theirs = new SessionTokenCodec(await Keyring.fromJSON({ keys: [entry('k1')] }))
    expect(await mine.open(await theirs.seal(claims))).toBeUndefined()
  })

  it('returns undefined, never throws, for malformed input', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate())
    const token = await codec.seal(claims)
    const kid = codec.keyIdOf(token)!
    const bad: unknown[] = [
      '',
      '.',
      kid,
      `${kid}.`,
      `.${token.split('.')[1]}`,
      token.replace('.', ''),
      token.slice(0, -1),
      token.slice(0, 40),
      `${kid}.${token.split('.')[1]!.slice(0, 20)}`,
      `${token}A`,
      `${token}.`,
      `${kid}.!!!!not-base64!!!!`,
      `${kid}.${token.split('.')[1]}==`,
      `${kid}.${encodeBase64url(new Uint8Array(28))}`,
      token.replace('.', '..'),
      ` ${token}`,
      `${kid}.${'A'.repeat(MAX_TOKEN_LENGTH)}`,
      'x'.repeat(1_000_000),
      'ферри.токен',
      undefined,
      null,
      42,
      {},
    ]
    for (const input of bad) expect(await codec.open(input as string)).toBeUndefined()
    expect(codec.keyIdOf('no-dot')).toBeUndefined()
    expect(codec.keyIdOf('bad kid.x')).toBeUndefined()
    expect(codec.keyIdOf(42 as unknown as string)).toBeUndefined()
  })

  it('refuses a validly sealed token whose claims fail the schema', async () => {
    const ring = await Keyring.generate()
    const kid = ring.primaryId
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(12))
    const seal = async (plaintext: string) => {
      const sealed = await globalThis.crypto.subtle.encrypt(
        { name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(kid) },
        ring.aesKey(kid)!,
        new TextEncoder().encode(plaintext)
      )
      return `${kid}.${encodeBase64url(new Uint8Array([...iv, ...new Uint8Array(sealed)]))}`
    }
    const codec = new SessionTokenCodec(ring, { now: fixedClock })
    const good = { ...claims, v: 1, iat: NOW }
    expect(await codec.open(await seal(JSON.stringify(good)))).toEqual(good) // the helper is right
    for (const plaintext of [
      JSON.stringify({ ...good, v: 2 }),
      JSON.stringify({ ...good, sid: 'Not A Label' }),
      JSON.stringify({ ...good, iat: 'now' }),
      JSON.stringify({ ...good, addr: undefined }),
      JSON.stringify({ ...good, ref: { n: 1 } }),
      'not json',
      '\u0000',
    ])
      expect(await codec.open(await seal(plaintext))).toBeUndefined()
  })

  it('refuses to seal claims that could never be opened', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate())
    await expect(codec.seal({ ...claims, sid: 'UPPER' })).rejects.toThrow()
    await expect(codec.seal({ ...claims, ref: { blob: 'x'.repeat(2000) } })).rejects.toThrow(
      RangeError
    )
  })

  it('expires tokens just past maxAge, on the cached path too', async () => {
    let now = NOW
    const codec = new SessionTokenCodec(await Keyring.generate(), {
      maxAgeSeconds: 3600,
      now: () => now,
    })
    const token = await codec.seal(claims)
    now = NOW + 3600
    expect(await codec.open(token)).toBeDefined() // fills the cache
    now = NOW + 3600.001
    expect(await codec.open(token)).toBeUndefined()

    const fresh = new SessionTokenCodec(await Keyring.generate(), { maxAgeSeconds: 60 })
    const uncached = await fresh.seal({ ...claims, iat: Math.floor(Date.now() / 1000) - 61 })
    expect(await fresh.open(uncached)).toBeUndefined()
  })

  it('rotates: old tokens open under [A, B], new ones seal with B, dropping A retires them', async () => {
    const a = entry('keyA')
    const b = entry('keyB')
    const oldCodec = new SessionTokenCodec(await Keyring.fromJSON({ keys: [a] }))
    const oldToken = await oldCodec.seal(claims)
    expect(oldCodec.keyIdOf(oldToken)).toBe('keyA')

    const both = new SessionTokenCodec(await Keyring.fromJSON({ keys: [a, b], primary: 'keyB' }))
    expect(await both.open(oldToken)).toMatchObject(claims)
    const newToken = await both.seal(claims)
    expect(newToken.startsWith('keyB.')).toBe(true)
    expect(await oldCodec.open(newToken)).toBeUndefined() // A-only replicas cannot read B yet

    const onlyB = new SessionTokenCodec(await Keyring.fromJSON({ keys: [b] }))
    expect(await onlyB.open(oldToken)).toBeUndefined()
    expect(await onlyB.open(newToken)).toMatchObject(claims)
  })

  it('evicts the least recently used entry and still opens evicted tokens', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate(), { cacheSize: 2 })
    const tokens = await Promise.all([1, 2, 3].map((n) => codec.seal({ ...claims, srv: `s${n}` })))
    for (const token of tokens) expect((await codec.open(token))?.srv).toMatch(/^s\d$/)
    expect((await codec.open(tokens[0]!))?.srv).toBe('s1')
  })

  it('returns frozen claims so callers cannot poison the cache', async () => {
    const codec = new SessionTokenCodec(await Keyring.generate())
    const token = await codec.seal(claims)
    const opened = (await codec.open(token))!
    expect(Object.isFrozen(opened) && Object.isFrozen(opened.ref)).toBe(true)
    expect(() => {
      opened.addr = 'ws://evil'
    }).toThrow(TypeError)
    expect((await codec.open(token))?.addr).toBe(claims.addr)
  })
})

describe('newSessionName', () => {
  it('is ferry- plus 16 lowercase base32 characters, a valid RFC 1123 label', () => {
    const names = new Set(Array.from({ length: 1000 }, newSessionName))
    expect(names.size).toBe(1000)
    for (const name of names) {
      expect(name).toMatch(/^ferry-[a-z2-7]{16}$/)
      expect(name.length).toBeLessThanOrEqual(63)
    }
  })
})
