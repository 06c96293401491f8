/** @module Tests for principal hashes (session ownership) and quota keys. */
import { describe, expect, it } from 'vitest'
import { Keyring } from '../session/keyring.ts'
import { SessionTokenCodec } from '../session/token.ts'
import {
  type Principal,
  anonymousPrincipal,
  constantTimeEqual,
  principalHash,
  principalKey,
  sameOwner,
} from './principal.ts'

const alice: Principal = { id: 'alice@example.com', scopes: ['mcp'], method: 'jwt' }
const mallory: Principal = { id: 'mallory@example.com', scopes: ['mcp'], method: 'jwt' }
const aliceByToken: Principal = { id: 'alice@example.com', scopes: [], method: 'bearer' }

const keyringWith = async (...ids: string[]) =>
  Keyring.fromJSON({
    keys: ids.map((id) => ({
      id,
      secret: Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(32))).toString(
        'base64url'
      ),
    })),
  })

describe('principalHash', () => {
  it('hashes method and id without revealing them (unkeyed)', async () => {
    const hash = await principalHash(alice)
    expect(hash).toMatch(/^s1\.[A-Za-z0-9_-]{43}$/)
    expect(hash).not.toContain('alice')
    expect(await principalHash(alice)).toBe(hash)
    expect(await principalHash(mallory)).not.toBe(hash)
    expect(await principalHash(aliceByToken)).not.toBe(hash) // same id, another method
  })

  it('keys the hash with the keyring primary key, so guessable ids cannot be confirmed', async () => {
    const keyring = await keyringWith('k1')
    const other = await keyringWith('k1')
    const hash = await principalHash(alice, keyring)
    expect(hash).toMatch(/^h1\.k1\.[A-Za-z0-9_-]{43}$/)
    expect(await principalHash(alice, other)).not.toBe(hash)
    expect(hash.length).toBeLessThanOrEqual(63)
  })

  it('fits the session token sub claim', async () => {
    const keyring = await keyringWith('k1')
    const codec = new SessionTokenCodec(keyring)
    const sub = await principalHash(alice, keyring)
    const token = await codec.seal({
      sid: 'ferry-abc',
      srv: 's',
      rt: 'local',
      addr: 'ws://x',
      pv: '1',
      sub,
    })
    expect((await codec.open(token))?.sub).toBe(sub)
  })
})

describe('sameOwner', () => {
  it('matches only the principal that started the session', async () => {
    const keyring = await keyringWith('k1')
    for (const sub of [await principalHash(alice), await principalHash(alice, keyring)]) {
      expect(await sameOwner(sub, alice, keyring)).toBe(true)
      expect(await sameOwner(sub, { ...alice, scopes: [] }, keyring)).toBe(true) // scopes may change
      expect(await sameOwner(sub, mallory, keyring)).toBe(false)
      expect(await sameOwner(sub, aliceByToken, keyring)).toBe(false)
      expect(await sameOwner(sub, anonymousPrincipal(), keyring)).toBe(false)
    }
  })

  it('survives rotation while the old key is in the ring, and fails once it is gone', async () => {
    const secret1 = 'A'.repeat(43)
    const secret2 = 'B'.repeat(42) + 'A'
    const before = await Keyring.fromJSON({ keys: [{ id: 'k1', secret: secret1 }] })
    const sub = await principalHash(alice, before)
    const rotated = await Keyring.fromJSON({
      keys: [
        { id: 'k1', secret: secret1 },
        { id: 'k2', secret: secret2 },
      ],
    })
    expect(rotated.primaryId).toBe('k2')
    expect(await principalHash(alice, rotated)).toMatch(/^h1\.k2\./)
    expect(await sameOwner(sub, alice, rotated)).toBe(true)
    expect(await sameOwner(sub, mallory, rotated)).toBe(false)
    const retired = await Keyring.fromJSON({ keys: [{ id: 'k2', secret: secret2 }] })
    expect(await sameOwner(sub, alice, retired)).toBe(false)
    expect(await sameOwner(sub, alice)).toBe(false) // a keyed hash needs the keyring
  })

  it('gives sessions without sub to the anonymous principal only', async () => {
    expect(await sameOwner(undefined, anonymousPrincipal())).toBe(true)
    expect(await sameOwner(undefined, alice)).toBe(false)
    expect(await sameOwner(undefined, aliceByToken)).toBe(false)
  })

  it('rejects malformed or forged sub values', async () => {
    const keyring = await keyringWith('k1')
    const good = await principalHash(alice)
    for (const sub of [
      '',
      'alice@example.com',
      's1',
      `${good}.x`,
      `s2.${good.slice(3)}`,
      'h1.k1',
      'h1.zz.abc',
    ]) {
      expect(await sameOwner(sub, alice, keyring)).toBe(false)
    }
  })
})

describe('principalKey', () => {
  it('is a stable, label-safe key per principal', async () => {
    const key = await principalKey(alice)
    expect(key).toMatch(/^[0-9a-f]{32}$/)
    expect(await principalKey({ ...alice, scopes: [] })).toBe(key)
    expect(await principalKey(mallory)).not.toBe(key)
    expect(await principalKey(aliceByToken)).not.toBe(key)
  })
})

describe('constantTimeEqual', () => {
  it('compares bytes', () => {
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true)
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false)
    expect(constantTimeEqual(new Uint8Array([1]), new Uint8Array([1, 2]))).toBe(false)
  })
})
