/** @module Tests for keyring validation, key derivation and the keyring file helpers. */
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  Keyring,
  KeyringError,
  KeyringFileSchema,
  addKeyToFile,
  decodeBase64url,
  encodeBase64url,
  loadKeyringFile,
  removeKeyFromFile,
  setPrimaryKey,
} from './keyring.ts'

const randomSecret = (bytes = 32) =>
  encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(bytes)))

const keyringError = async (data: unknown, source?: string): Promise<KeyringError> => {
  const error = await Keyring.fromJSON(data, source).then(
    () => undefined,
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(KeyringError)
  return error as KeyringError
}

describe('base64url', () => {
  it('round-trips every length and rejects non-canonical or foreign input', () => {
    for (let n = 0; n < 40; n++) {
      const bytes = globalThis.crypto.getRandomValues(new Uint8Array(n))
      const text = encodeBase64url(bytes)
      expect(text).toMatch(/^[A-Za-z0-9_-]*$/)
      expect(decodeBase64url(text)).toEqual(bytes)
    }
    expect(decodeBase64url('AB==')).toBeUndefined() // padding
    expect(decodeBase64url('ab+/')).toBeUndefined() // standard alphabet
    expect(decodeBase64url('A')).toBeUndefined() // impossible length
    expect(decodeBase64url('AA')).toEqual(new Uint8Array([0]))
    expect(decodeBase64url('AB')).toBeUndefined() // same byte, stray low bits
  })
})

describe('Keyring.fromJSON', () => {
  it('seals with the last key unless primary is set, and knows every id', async () => {
    const keys = [
      { id: 'a', secret: randomSecret(), createdAt: '2026-01-01T00:00:00Z' },
      { id: 'b', secret: randomSecret() },
    ]
    const last = await Keyring.fromJSON({ keys })
    expect(last.primaryId).toBe('b')
    expect(last.ids).toEqual(['a', 'b'])
    expect(last.has('a') && last.has('b')).toBe(true)
    expect(last.has('c')).toBe(false)
    expect((await Keyring.fromJSON({ keys, primary: 'a' })).primaryId).toBe('a')
  })

  it('keeps only non-extractable CryptoKeys, with AES-GCM and HMAC per key', async () => {
    const secret = randomSecret()
    const ring = await Keyring.fromJSON({ keys: [{ id: 'k1', secret }] })
    const aes = ring.aesKey('k1')!
    const hmac = ring.hmacKey('k1')!
    expect(aes.algorithm.name).toBe('AES-GCM')
    expect(hmac.algorithm.name).toBe('HMAC')
    expect(aes.extractable || hmac.extractable).toBe(false)
    expect(ring.aesKey('nope')).toBeUndefined()
    expect(JSON.stringify(ring)).not.toContain(secret)
  })

  it('rejects duplicate ids, naming the field', async () => {
    const error = await keyringError(
      {
        keys: [
          { id: 'k1', secret: randomSecret() },
          { id: 'k1', secret: randomSecret() },
        ],
      },
      '/etc/ferry/keys.json'
    )
    expect(error.message).toContain('/etc/ferry/keys.json')
    expect(error.message).toContain('keys[1].id')
    expect(error.message).toMatch(/duplicate/)
    expect(error.issues).toEqual([{ path: 'keys[1].id', message: expect.any(String) }])
  })

  it('rejects a short secret without echoing it', async () => {
    const short = randomSecret(16)
    const error = await keyringError({ keys: [{ id: 'k1', secret: short }] }, 'keys.json')
    expect(error.message).toContain('keys.json')
    expect(error.message).toContain('keys[0].secret')
    expect(error.message).toContain('32 bytes')
    expect(error.message).not.toContain(short)
  })

  it('rejects secrets that are not base64url, without echoing them', async () => {
    const padded = `${randomSecret()}=`
    const standard = btoa(String.fromCharCode(...new Uint8Array(32).fill(0xfb)))
    const error = await keyringError({
      keys: [
        { id: 'k1', secret: padded },
        { id: 'k2', secret: standard },
      ],
    })
    expect(error.issues.map((i) => i.path)).toEqual(['keys[0].secret', 'keys[1].secret'])
    expect(error.message).not.toContain(padded)
    expect(error.message).not.toContain(standard)
  })

  it('rejects bad id characters and lengths', async () => {
    const error = await keyringError({
      keys: [
        { id: 'has space', secret: randomSecret() },
        { id: '', secret: randomSecret() },
        { id: 'x'.repeat(17), secret: randomSecret() },
        { id: 'ok.dot', secret: randomSecret() },
      ],
    })
    expect(error.issues.map((i) => i.path)).toEqual([
      'keys[0].id',
      'keys[1].id',
      'keys[2].id',
      'keys[3].id',
    ])
    expect(error.message).toContain('1–16 characters')
  })

  it('rejects an empty or missing key list and other shapes', async () => {
    expect((await keyringError({ keys: [] })).message).toMatch(/keys: must contain at least one/)
    expect((await keyringError({})).issues[0]!.path).toBe('keys')
    expect((await keyringError(null)).issues[0]!.path).toBe('(root)')
    expect((await keyringError([])).issues[0]!.path).toBe('(root)')
  })

  it('rejects a primary that names no key, unknown fields and bad dates', async () => {
    const secret = randomSecret()
    const error = await keyringError({
      keys: [{ id: 'k1', secret, createdAt: 'yesterday', note: secret }],
      primay: 'k1',
      primary: 'k2',
    })
    const paths = error.issues.map((i) => i.path)
    expect(paths).toEqual(expect.arrayContaining(['keys[0].createdAt', 'keys[0]', '(root)']))
    expect(error.message).toMatch(/primay/)
    expect(error.message).not.toContain(secret)
    const primary = await keyringError({ keys: [{ id: 'k1', secret }], primary: 'k2' })
    expect(primary.issues).toEqual([{ path: 'primary', message: expect.any(String) }])
  })

  it('exposes the schema for callers that validate without importing keys', () => {
    expect(
      KeyringFileSchema.safeParse({ keys: [{ id: 'a', secret: randomSecret() }] }).success
    ).toBe(true)
  })
})

describe('Keyring.generate', () => {
  it('makes one fresh key with a valid, unique id', async () => {
    const [a, b] = await Promise.all([Keyring.generate(), Keyring.generate()])
    expect(a.ids).toHaveLength(1)
    expect(a.primaryId).toMatch(/^[A-Za-z0-9_-]{1,16}$/)
    expect(a.primaryId).not.toBe(b.primaryId)
  })
})

describe('keyring files', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-keyring-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates a file with mode 0600, appends, and sets primary on request', async () => {
    const path = join(dir, 'nested', 'keys.json')
    const first = await addKeyToFile(path)
    expect(first.created).toBe(true)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const ring1 = await loadKeyringFile(path)
    expect(ring1.ids).toEqual([first.id])
    expect(ring1.primaryId).toBe(first.id)

    const second = await addKeyToFile(path, { id: 'k-second' })
    expect(second).toEqual({ id: 'k-second', created: false })
    const ring2 = await loadKeyringFile(path)
    expect(ring2.ids).toEqual([first.id, 'k-second'])
    // Adding never moves sealing to the new key: replicas that loaded it first would seal
    // ids the others cannot open.
    expect(ring2.primaryId).toBe(first.id)

    const third = await addKeyToFile(path, { id: 'k-third' })
    await addKeyToFile(path, { id: 'k-fourth' })
    const pinned = await addKeyToFile(path, { primary: true })
    const ring3 = await loadKeyringFile(path)
    expect(ring3.ids).toEqual([first.id, 'k-second', third.id, 'k-fourth', pinned.id])
    expect(ring3.primaryId).toBe(pinned.id)
    const file = JSON.parse(await readFile(path, 'utf8')) as { primary: string; keys: object[] }
    expect(file.primary).toBe(pinned.id)
    expect(file.keys.every((k) => 'createdAt' in k)).toBe(true)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('makes a key primary and drops keys, but never the one that seals', async () => {
    const path = join(dir, 'keys.json')
    await addKeyToFile(path, { id: 'old' })
    await addKeyToFile(path, { id: 'new' })
    expect((await loadKeyringFile(path)).primaryId).toBe('old')
    await expect(removeKeyFromFile(path, 'old')).rejects.toThrow(/seals new session ids/)
    await setPrimaryKey(path, 'new')
    expect((await loadKeyringFile(path)).primaryId).toBe('new')
    await removeKeyFromFile(path, 'old')
    expect((await loadKeyringFile(path)).ids).toEqual(['new'])
    await expect(setPrimaryKey(path, 'gone')).rejects.toThrow(/No key gone/)
    await expect(removeKeyFromFile(path, 'gone')).rejects.toThrow(/No key gone/)
  })

  it('keeps an existing primary when appending without primary, and the file mode', async () => {
    const path = join(dir, 'keys.json')
    await writeFile(path, JSON.stringify({ keys: [{ id: 'old', secret: randomSecret() }] }))
    await chmod(path, 0o640)
    await addKeyToFile(path, { id: 'mid', primary: true })
    await addKeyToFile(path, { id: 'new' })
    const ring = await loadKeyringFile(path)
    expect(ring.ids).toEqual(['old', 'mid', 'new'])
    expect(ring.primaryId).toBe('mid')
    expect((await stat(path)).mode & 0o777).toBe(0o640)
  })

  it('refuses duplicate or invalid ids and broken files, leaving them untouched', async () => {
    const path = join(dir, 'keys.json')
    await addKeyToFile(path, { id: 'k1' })
    const before = await readFile(path, 'utf8')
    await expect(addKeyToFile(path, { id: 'k1' })).rejects.toThrow(KeyringError)
    await expect(addKeyToFile(path, { id: 'bad id' })).rejects.toThrow(/1–16 characters/)
    expect(await readFile(path, 'utf8')).toBe(before)

    const broken = join(dir, 'broken.json')
    await writeFile(broken, JSON.stringify({ keys: [{ id: 'k1', secret: 'short' }] }))
    await expect(addKeyToFile(broken)).rejects.toThrow(/keys\[0\]\.secret/)
    expect(JSON.parse(await readFile(broken, 'utf8'))).toEqual({
      keys: [{ id: 'k1', secret: 'short' }],
    })
  })

  it('reports a missing file, invalid JSON and invalid content clearly', async () => {
    const missing = join(dir, 'missing.json')
    await expect(loadKeyringFile(missing)).rejects.toThrow(`Keyring file not found: ${missing}`)

    const secret = randomSecret()
    const notJson = join(dir, 'not.json')
    await writeFile(notJson, `{"keys": [{"id": "k1", "secret": "${secret}" oops}]}`)
    const error: unknown = await loadKeyringFile(notJson).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(KeyringError)
    const { message } = error as KeyringError
    expect(message).toContain(notJson)
    expect(message).toMatch(/not valid JSON \(at position \d+/)
    expect(message).not.toContain(secret)
    expect(message).not.toContain('oops')

    const invalid = join(dir, 'invalid.json')
    await writeFile(invalid, JSON.stringify({ keys: [{ id: 'k1', secret: secret.slice(4) }] }))
    await expect(loadKeyringFile(invalid)).rejects.toThrow(
      new RegExp(`${invalid}[\\s\\S]*keys\\[0\\]\\.secret`)
    )
  })
})
