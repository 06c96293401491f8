/**
 * @module
 * SSE event ids. An id names its stream and a sequence number in that stream,
 * `<stream>.<seq>`, so a `Last-Event-ID` alone tells any bridge replica which
 * stream to resume and from where. The standalone (GET) stream is `_`; a POST
 * stream is `r` + the base64url of its request id's JSON, which is unique in a
 * session because MCP forbids reusing request ids. Sequence 0 is the priming event.
 */
import type { JSONRPCId } from './jsonrpc.ts'

/** Stream key of the session's standalone GET stream. */
export const STANDALONE_STREAM = '_'

const decoder = new TextDecoder('utf-8', { fatal: true })

const fromBase64Url = (text: string): Uint8Array | undefined => {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  try {
    const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'))
    return Uint8Array.from(binary, (c) => c.charCodeAt(0))
  } catch {
    return undefined
  }
}

/** The stream key of the POST stream that carries request `id`. */
export const requestStreamKey = (id: JSONRPCId): string =>
  // Computed for every request and response the sidecar relays: Buffer's native base64url is
  // many times cheaper than btoa over a byte-by-byte binary string.
  `r${Buffer.from(JSON.stringify(id), 'utf8').toString('base64url')}`

/** The request id a POST stream key stands for, or undefined for other keys. */
export const requestIdOfStream = (key: string): JSONRPCId | undefined => {
  if (!key.startsWith('r')) return undefined
  const bytes = fromBase64Url(key.slice(1))
  if (!bytes) return undefined
  try {
    const id: unknown = JSON.parse(decoder.decode(bytes))
    if (typeof id !== 'string' && (typeof id !== 'number' || !Number.isFinite(id))) return undefined
    // Only the key requestStreamKey issues names the stream: base64 with stray trailing
    // bits, or JSON with extra whitespace, decodes to the same id but is another key.
    return requestStreamKey(id) === key ? id : undefined
  } catch {
    return undefined
  }
}

export const formatEventId = (stream: string, seq: number) => `${stream}.${seq}`

/** Splits an event id; undefined when it is not one Ferry issued. */
export const parseEventId = (id: string): { stream: string; seq: number } | undefined => {
  const dot = id.lastIndexOf('.')
  if (dot <= 0) return undefined
  const stream = id.slice(0, dot)
  const seqText = id.slice(dot + 1)
  if (!/^(0|[1-9][0-9]{0,14})$/.test(seqText)) return undefined
  if (stream !== STANDALONE_STREAM && requestIdOfStream(stream) === undefined) return undefined
  return { stream, seq: Number(seqText) }
}
