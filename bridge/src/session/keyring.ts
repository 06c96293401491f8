/**
 * @module
 * The bridge's keyring: the secrets that seal session tokens and derive sidecar secrets.
 * Validates the keyring file, turns each secret into purpose-bound Web Crypto keys once, and
 * backs `ferry keys new`. The core uses only Web Crypto so it runs on edge runtimes; `node:fs`
 * is loaded lazily, and only by the file helpers.
 */
import type * as NodeFs from 'node:fs/promises'
import { z } from 'zod'

type CryptoKey = InstanceType<typeof globalThis.CryptoKey>

const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/
const SECRET_BYTES = 32

// Distinct HKDF labels, so the one stored secret never keys two algorithms directly.
const SESSION_TOKEN_INFO = 'ferry session token v1'
const SIDECAR_SECRET_INFO = 'ferry sidecar secret v1'

const subtle = () => globalThis.crypto.subtle

// ---------------------------------------------------------------------------------------------
// base64url (RFC 4648 §5, unpadded). Shared with the sibling session modules; written here
// rather than taken from Buffer so the core stays free of Node APIs.

/** Encodes bytes as unpadded base64url. */
export function encodeBase64url(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/

/**
 * Decodes unpadded base64url; `undefined` for anything else. Only the canonical encoding is
 * accepted, so no two distinct strings decode to the same bytes.
 */
export function decodeBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!BASE64URL_PATTERN.test(text) || text.length % 4 === 1) return undefined
  let binary: string
  try {
    binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  } catch {
    return undefined
  }
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  // Unused low bits in the last character would otherwise let a token be re-spelled.
  return encodeBase64url(bytes) === text ? bytes : undefined
}

// ---------------------------------------------------------------------------------------------
// File schema

const KEY_ID_MESSAGE = 'must be 1–16 characters of A–Z, a–z, 0–9, "_" or "-"'
const KeyIdSchema = z.string().regex(KEY_ID_PATTERN, KEY_ID_MESSAGE)

const KeyEntrySchema = z.strictObject({
  id: KeyIdSchema,
  secret: z
    .string()
    .refine(
      (s) => decodeBase64url(s)?.length === SECRET_BYTES,
      `must be unpadded base64url of exactly ${SECRET_BYTES} bytes`
    ),
  createdAt: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' }).optional(),
})

/**
 * The keyring file. Strict about unknown fields on purpose: a typo such as `primay` must fail
 * loudly instead of silently changing which key seals new sessions.
 */
export const KeyringFileSchema = z
  .strictObject({
    keys: z.array(KeyEntrySchema).min(1, 'must contain at least one key'),
    primary: KeyIdSchema.optional(),
  })
  .superRefine((file, ctx) => {
    const firstIndex = new Map<string, number>()
    file.keys.forEach((key, index) => {
      const first = firstIndex.get(key.id)
      if (first === undefined) firstIndex.set(key.id, index)
      else
        ctx.addIssue({
          code: 'custom',
          path: ['keys', index, 'id'],
          message: `duplicate key id (same as keys[${first}].id)`,
        })
    })
    if (file.primary !== undefined && !firstIndex.has(file.primary))
      ctx.addIssue({ code: 'custom', path: ['primary'], message: 'does not name a key in "keys"' })
  })

export type KeyringFile = z.infer<typeof KeyringFileSchema>
export type KeyringFileEntry = KeyringFile['keys'][number]

/** One problem found in a keyring: where (`keys[1].secret`) and why. */
export interface KeyringIssue {
  path: string
  message: string
}

/** A keyring that cannot be used. Messages name the source and fields, never secret values. */
export class KeyringError extends Error {
  override readonly name = 'KeyringError'
  readonly source: string | undefined
  readonly issues: readonly KeyringIssue[]

  constructor(message: string, options?: { source?: string; issues?: readonly KeyringIssue[] }) {
    super(message)
    this.source = options?.source
    this.issues = options?.issues ?? []
  }
}

const formatPath = (path: readonly PropertyKey[]): string => {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? String(part) : `.${String(part)}`
  }
  return out === '' ? '(root)' : out
}

const describeSource = (source: string | undefined): string =>
  source === undefined ? 'keyring' : `keyring ${source}`

// ---------------------------------------------------------------------------------------------
// Keyring

interface KeyPair {
  /** AES-256-GCM key that seals and opens session tokens. */
  aes: CryptoKey
  /** HMAC-SHA256 key that derives per-session sidecar secrets. */
  hmac: CryptoKey
}

const utf8 = new TextEncoder()

async function deriveKeyPair(secret: Uint8Array<ArrayBuffer>): Promise<KeyPair> {
  const base = await subtle().importKey('raw', secret, 'HKDF', false, ['deriveKey'])
  // The secret is already uniformly random, so an empty salt is fine (RFC 5869 §3.1).
  const hkdf = (info: string) => ({
    name: 'HKDF',
    hash: 'SHA-256',
    salt: new Uint8Array(0),
    info: utf8.encode(info),
  })
  const [aes, hmac] = await Promise.all([
    subtle().deriveKey(hkdf(SESSION_TOKEN_INFO), base, { name: 'AES-GCM', length: 256 }, false, [
      'encrypt',
      'decrypt',
    ]),
    subtle().deriveKey(
      hkdf(SIDECAR_SECRET_INFO),
      base,
      { name: 'HMAC', hash: 'SHA-256', length: 256 },
      false,
      ['sign', 'verify']
    ),
  ])
  return { aes, hmac }
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

function newKeyId(now: Date): string {
  const random = globalThis.crypto.getRandomValues(new Uint8Array(5))
  let suffix = ''
  // 256 is a multiple of 32, so masking keeps every character uniformly distributed.
  for (const byte of random) suffix += BASE32[byte & 31]
  const day = now.toISOString().slice(0, 10).replace(/-/g, '')
  return `k${day}-${suffix}` // e.g. k20260301-q7m2x: sortable by day, 15 chars
}

function newKeyEntry(id?: string): { id: string; secret: string; createdAt: string } {
  const now = new Date()
  const secret = globalThis.crypto.getRandomValues(new Uint8Array(SECRET_BYTES))
  return { id: id ?? newKeyId(now), secret: encodeBase64url(secret), createdAt: now.toISOString() }
}

/**
 * An immutable set of keys. Seals with {@link Keyring.primaryId}; opens with any key in the ring.
 * Only non-extractable CryptoKeys are kept — the raw secrets are dropped after import, so a
 * Keyring cannot leak them through logging or serialisation. To rotate, build a new Keyring
 * (and with it new codecs) from the updated file.
 */
export class Keyring {
  /** The key new tokens are sealed with: `primary` if set, otherwise the last (newest) key. */
  readonly primaryId: string
  /** Every key id in the ring, in file order. */
  readonly ids: readonly string[]
  readonly #keys: ReadonlyMap<string, KeyPair>

  private constructor(keys: ReadonlyMap<string, KeyPair>, ids: readonly string[], primary: string) {
    this.#keys = keys
    this.ids = ids
    this.primaryId = primary
  }

  /**
   * Builds a keyring from parsed keyring-file JSON. `source` (e.g. the file path) is named in
   * error messages. Throws {@link KeyringError} listing every bad field.
   */
  static async fromJSON(data: unknown, source?: string): Promise<Keyring> {
    const parsed = KeyringFileSchema.safeParse(data)
    if (!parsed.success) {
      const issues = parsed.error.issues.map((issue) => ({
        path: formatPath(issue.path),
        message: issue.message,
      }))
      throw new KeyringError(
        `Invalid ${describeSource(source)}:\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`,
        { ...(source === undefined ? {} : { source }), issues }
      )
    }
    const file = parsed.data
    const pairs = await Promise.all(
      file.keys.map(async (key) => {
        const secret = decodeBase64url(key.secret)!
        try {
          return await deriveKeyPair(secret)
        } finally {
          secret.fill(0)
        }
      })
    )
    const keys = new Map(file.keys.map((key, i) => [key.id, pairs[i]!]))
    const ids = file.keys.map((key) => key.id)
    return new Keyring(keys, Object.freeze(ids), file.primary ?? ids[ids.length - 1]!)
  }

  /** A keyring with one fresh random key, for development and tests (nothing is persisted). */
  static async generate(): Promise<Keyring> {
    return Keyring.fromJSON({ keys: [newKeyEntry()] }, 'generated keyring')
  }

  has(id: string): boolean {
    return this.#keys.has(id)
  }

  /** @internal The AES-GCM key for session tokens; for the session modules only. */
  aesKey(id: string): CryptoKey | undefined {
    return this.#keys.get(id)?.aes
  }

  /** @internal The HMAC-SHA256 key for sidecar secrets; for the session modules only. */
  hmacKey(id: string): CryptoKey | undefined {
    return this.#keys.get(id)?.hmac
  }
}

// ---------------------------------------------------------------------------------------------
// Keyring files (Node only)

type Fs = typeof NodeFs

// Imported on demand so the module stays loadable where `node:fs` does not exist.
const loadFs = (): Promise<Fs> => import('node:fs/promises')

const errorCode = (error: unknown): string | undefined =>
  typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined

/** Reads and parses a keyring file; `undefined` when it does not exist. */
async function readKeyringJSON(fs: Fs, path: string): Promise<unknown> {
  let text: string
  try {
    text = await fs.readFile(path, 'utf8')
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined
    throw new KeyringError(
      `Cannot read keyring file ${path}: ${errorCode(error) ?? (error as Error).message}`,
      { source: path }
    )
  }
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    // V8's message can quote the surrounding text — possibly a secret — so keep only the position.
    const where = /position \d+(?: \(line \d+ column \d+\))?/.exec((error as Error).message)
    throw new KeyringError(
      `Keyring file ${path} is not valid JSON${where ? ` (at ${where[0]})` : ''}`,
      { source: path }
    )
  }
}

/** Loads and validates a keyring file. Throws {@link KeyringError} with a readable message. */
export async function loadKeyringFile(path: string): Promise<Keyring> {
  const data = await readKeyringJSON(await loadFs(), path)
  if (data === undefined)
    throw new KeyringError(`Keyring file not found: ${path}`, { source: path })
  return Keyring.fromJSON(data, path)
}

/**
 * Reads, changes and atomically rewrites a keyring file (mode 0600 when created; an
 * existing file keeps its mode). The result must load, so a broken file is never
 * written; a broken existing file is refused.
 */
async function updateKeyringFile(
  path: string,
  change: (file: KeyringFile | undefined) => KeyringFile
): Promise<{ created: boolean }> {
  const fs = await loadFs()
  const { dirname, basename, join } = await import('node:path')
  const existing = await readKeyringJSON(fs, path)
  let mode = 0o600
  if (existing !== undefined) {
    await Keyring.fromJSON(existing, path) // refuse to rewrite a broken file
    mode = (await fs.stat(path)).mode & 0o777
  }
  const next = change(existing as KeyringFile | undefined)
  await Keyring.fromJSON(next, path) // never write a file that would not load

  const dir = dirname(path)
  if (existing === undefined) await fs.mkdir(dir, { recursive: true, mode: 0o700 })
  const suffix = encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(6)))
  const temp = join(dir, `.${basename(path)}.${suffix}.tmp`)
  const handle = await fs.open(temp, 'wx', 0o600)
  try {
    try {
      await handle.writeFile(`${JSON.stringify(next, null, 2)}\n`, 'utf8')
      await handle.chmod(mode) // the umask may have narrowed it
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.rename(temp, path)
  } catch (error) {
    await fs.rm(temp, { force: true })
    throw error
  }
  return { created: existing === undefined }
}

const keyringIssue = (path: string, message: string, field: string) =>
  new KeyringError(`${message} (${path})`, { source: path, issues: [{ path: field, message }] })

/**
 * Creates a keyring file with one new key, or adds a key to an existing one. Adding to
 * a file never changes which key seals unless `primary` is set: a file without a
 * `primary` gets its current sealing key pinned first, because replicas that already
 * loaded the new key would otherwise seal session ids the others cannot open yet.
 * Rotation: add a key, roll every replica, make it primary, roll, drop the old one, roll.
 */
export async function addKeyToFile(
  path: string,
  options?: { id?: string; primary?: boolean }
): Promise<{ id: string; created: boolean }> {
  if (options?.id !== undefined && !KEY_ID_PATTERN.test(options.id)) {
    throw keyringIssue(path, `Invalid key id: ${KEY_ID_MESSAGE}`, 'id')
  }
  let id = ''
  const { created } = await updateKeyringFile(path, (file) => {
    const keys = file?.keys ?? []
    if (options?.id !== undefined && keys.some((key) => key.id === options.id)) {
      throw keyringIssue(path, `Key id ${options.id} already exists`, 'id')
    }
    let entry = newKeyEntry(options?.id)
    while (keys.some((key) => key.id === entry.id)) entry = newKeyEntry() // same-day clash
    id = entry.id
    const sealing = file?.primary ?? keys.at(-1)?.id
    const primary = options?.primary || !sealing ? entry.id : sealing
    return { ...file, keys: [...keys, entry], primary }
  })
  return { id, created }
}

/** Makes key `id` the one that seals new session ids. */
export async function setPrimaryKey(path: string, id: string): Promise<void> {
  await updateKeyringFile(path, (file) => {
    if (!file?.keys.some((key) => key.id === id)) {
      throw keyringIssue(path, `No key ${id} in the keyring`, 'id')
    }
    return { ...file, primary: id }
  })
}

/** Drops key `id`; session ids sealed with it stop working. The primary key cannot be dropped. */
export async function removeKeyFromFile(path: string, id: string): Promise<void> {
  await updateKeyringFile(path, (file) => {
    if (!file?.keys.some((key) => key.id === id)) {
      throw keyringIssue(path, `No key ${id} in the keyring`, 'id')
    }
    const sealing = file.primary ?? file.keys.at(-1)!.id
    if (sealing === id) {
      throw keyringIssue(
        path,
        `Key ${id} seals new session ids: make another key primary first`,
        'id'
      )
    }
    return { ...file, keys: file.keys.filter((key) => key.id !== id) }
  })
}
