/** @module Tests for the session directory: new sessions, minting and resolving session ids. */
import { describe, expect, it } from 'vitest'
import { Keyring, encodeBase64url } from './keyring.ts'
import { SessionDirectory } from './session-directory.ts'
import { deriveSidecarSecret } from './sidecar-secret.ts'

const randomSecret = () => encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(32)))

const claimsFor = (sessionName: string) => ({
  sid: sessionName,
  srv: 'conf',
  rt: 'local',
  addr: 'ws://127.0.0.1:41234',
  pv: '2025-11-25',
})

describe('SessionDirectory', () => {
  it('newSession gives a fresh RFC 1123 name and its sidecar secret each time', async () => {
    const keyring = await Keyring.generate()
    const directory = new SessionDirectory({ keyring, maxAgeSeconds: 3600 })
    const sessions = await Promise.all(Array.from({ length: 20 }, () => directory.newSession()))
    for (const { sessionName, secret } of sessions) {
      expect(sessionName).toMatch(/^ferry-[a-z2-7]{16}$/)
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(secret).toBe(await deriveSidecarSecret(keyring, keyring.primaryId, sessionName))
    }
    expect(new Set(sessions.map((s) => s.sessionName)).size).toBe(20)
    expect(new Set(sessions.map((s) => s.secret)).size).toBe(20)
  })

  it('mint → resolve round-trips the claims', async () => {
    const keyring = await Keyring.generate()
    const directory = new SessionDirectory({ keyring, maxAgeSeconds: 3600 })
    const { sessionName } = await directory.newSession()
    const before = Math.floor(Date.now() / 1000)
    const sessionId = await directory.mint({
      ...claimsFor(sessionName),
      ref: { namespace: 'ns', job: sessionName },
    })
    expect(sessionId).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    expect(sessionId).not.toContain(sessionName)
    const resolved = await directory.resolve(sessionId)
    expect(resolved?.claims).toEqual({
      v: 1,
      ...claimsFor(sessionName),
      ref: { namespace: 'ns', job: sessionName },
      iat: expect.any(Number) as number,
    })
    expect(resolved!.claims.iat).toBeGreaterThanOrEqual(before)
    expect(resolved!.claims.iat).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000))
    // Any replica with the same keyring resolves it too: nothing is kept in the directory.
    const replica = new SessionDirectory({ keyring, maxAgeSeconds: 3600 })
    expect((await replica.resolve(sessionId))?.claims).toEqual(resolved!.claims)
  })

  it('target yields the address and the very secret the sidecar was given', async () => {
    const keyring = await Keyring.generate()
    const directory = new SessionDirectory({ keyring, maxAgeSeconds: 3600 })
    const { sessionName, secret } = await directory.newSession()
    const sessionId = await directory.mint(claimsFor(sessionName))
    const resolved = await new SessionDirectory({ keyring, maxAgeSeconds: 3600 }).resolve(sessionId)
    expect(resolved!.target.sessionName).toBe(sessionName)
    expect(resolved!.target.address).toBe('ws://127.0.0.1:41234')
    expect(await resolved!.target.secret()).toBe(secret)
  })

  it("target keeps using the token's key after the primary key rotates", async () => {
    const old = { id: 'old', secret: randomSecret() }
    const next = { id: 'new', secret: randomSecret() }
    const before = await Keyring.fromJSON({ keys: [old] })
    const { sessionName, secret } = await new SessionDirectory({
      keyring: before,
      maxAgeSeconds: 3600,
    }).newSession()
    const sessionId = await new SessionDirectory({ keyring: before, maxAgeSeconds: 3600 }).mint(
      claimsFor(sessionName)
    )
    const rotated = await Keyring.fromJSON({ keys: [old, next], primary: 'new' })
    const directory = new SessionDirectory({ keyring: rotated, maxAgeSeconds: 3600 })
    const resolved = await directory.resolve(sessionId)
    expect(await resolved!.target.secret()).toBe(secret)
    // New sessions use the new primary key.
    const fresh = await directory.newSession()
    expect(fresh.secret).toBe(await deriveSidecarSecret(rotated, 'new', fresh.sessionName))
    expect((await directory.mint(claimsFor(fresh.sessionName))).startsWith('new.')).toBe(true)
  })

  it('resolve answers undefined for garbage, tampered and foreign ids, never throws', async () => {
    const keyring = await Keyring.generate()
    const directory = new SessionDirectory({ keyring, maxAgeSeconds: 3600 })
    const { sessionName } = await directory.newSession()
    const sessionId = await directory.mint(claimsFor(sessionName))
    const dot = sessionId.indexOf('.')
    const body = sessionId.slice(dot + 1)
    const flipped = body.slice(0, 20) + (body[20] === 'A' ? 'B' : 'A') + body.slice(21)
    for (const id of [
      '',
      'garbage',
      '.',
      'no-dot-at-all',
      `${sessionId.slice(0, dot)}.`,
      `${sessionId.slice(0, dot)}.${flipped}`,
      `other.${body}`,
      `${sessionId}x`,
      sessionId.slice(0, -2),
      'x'.repeat(5000),
      '💥.💥',
    ]) {
      expect(await directory.resolve(id), id.slice(0, 40)).toBeUndefined()
    }
    const foreign = new SessionDirectory({ keyring: await Keyring.generate(), maxAgeSeconds: 3600 })
    expect(await foreign.resolve(sessionId)).toBeUndefined()
  })

  it('refuses session ids older than maxAgeSeconds', async () => {
    const keyring = await Keyring.generate()
    const directory = new SessionDirectory({ keyring, maxAgeSeconds: 0 })
    const { sessionName } = await directory.newSession()
    const sessionId = await directory.mint(claimsFor(sessionName))
    // iat is whole seconds: wait until the current second is past it.
    const iat = Math.floor(Date.now() / 1000)
    while (Date.now() / 1000 < iat + 1.01) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(await directory.resolve(sessionId)).toBeUndefined()
  })

  it('mint refuses claims that could never be resolved', async () => {
    const directory = new SessionDirectory({
      keyring: await Keyring.generate(),
      maxAgeSeconds: 3600,
    })
    await expect(directory.mint({ ...claimsFor('Not_A_Label'), srv: 'conf' })).rejects.toThrow()
    await expect(directory.mint({ ...claimsFor('ferry-abc'), addr: '' })).rejects.toThrow()
  })
})
