/**
 * @module
 * The bridge ↔ sidecar protocol: WebSocket text frames of a small JSON header,
 * optionally followed by a newline and one raw JSON-RPC message. Keeping the MCP
 * message as raw text lets the bridge pass server messages to HTTP clients without
 * parsing or re-serialising them.
 *
 * A bridge connection multiplexes channels (`ch`): each channel is one HTTP
 * exchange (a POST, or a GET stream) on that bridge replica. Channel numbers are
 * local to one WebSocket connection.
 */
import type { TraceFields } from './trace-context.ts'

/** WebSocket subprotocol spoken by bridge and sidecar; bumped on incompatible changes. */
export const FRAME_PROTOCOL = 'ferry.v1'

/** Header names of the WebSocket upgrade request. */
export const UpgradeHeader = {
  /** The session (workload) name the sidecar was started for. */
  session: 'x-ferry-session',
  /** The per-session secret, as `Bearer <secret>` in `authorization`. */
  authorization: 'authorization',
} as const

/**
 * A client request: opens the request's stream in the sidecar. Payload: the request, as the
 * client sent it; `tp`/`ts` carry the bridge's span, which the sidecar continues.
 */
export interface RequestFrame extends TraceFields {
  t: 'req'
  ch: number
}
/** A client notification or response. Payload: the message. Answered by `ack` or `err`. */
export interface MessageFrame extends TraceFields {
  t: 'msg'
  ch: number
}
/**
 * Attaches a channel to a stream: without `after`, the standalone (GET) stream,
 * taking it over from whichever channel held it; with `after`, the stream that
 * event id belongs to, replaying what followed it. Answered by `ack` (or `err`).
 */
export interface AttachFrame {
  t: 'get'
  ch: number
  after?: string
}
/** The bridge no longer listens on a channel (client gone, or connection closed for polling). */
export interface DetachFrame {
  t: 'detach'
  ch: number
}
/** Ends the session (HTTP DELETE). Answered by `ack`, then `exit` to every connection. */
export interface TerminateFrame {
  t: 'bye'
  ch: number
}
export type BridgeFrameHeader =
  RequestFrame | MessageFrame | AttachFrame | DetachFrame | TerminateFrame

/**
 * One SSE event for a channel. Payload: the message. `fin` marks the response that ends a POST
 * stream. `tp`/`ts` carry the sidecar's span for a server request or notification.
 */
export interface EventFrame extends TraceFields, EvictionReport {
  t: 'ev'
  ch: number
  id: string
  fin?: 1
  /**
   * On a `fin` event: the response's `error.type` — its JSON-RPC error code, or `tool_error` for
   * a tool result with `isError` — so the bridge counts outcomes without parsing the payload.
   */
  errorType?: string
}
/** The sidecar's event-log evictions, reported once: on the next `ev` or `exit` frame to any bridge. */
interface EvictionReport {
  /** Events evicted from the session's log since the last report. */
  evicted?: number
}
export const END_REASONS = ['complete', 'cancelled', 'takeover', 'session'] as const
/** The channel's stream has nothing more (complete, cancelled, or taken over by another channel). */
export interface EndFrame {
  t: 'end'
  ch: number
  reason: (typeof END_REASONS)[number]
}
/** A `msg`, `get` or `bye` was accepted. */
export interface AckFrame {
  t: 'ack'
  ch: number
}
export const FRAME_ERROR_CODES = [
  'bad_message',
  'duplicate_id',
  'unknown_stream',
  'not_running',
] as const
export type FrameErrorCode = (typeof FRAME_ERROR_CODES)[number]
/** A channel's frame was refused; `code` says why. */
export interface ErrorFrame {
  t: 'err'
  ch: number
  code: FrameErrorCode
  message: string
}
/** Events of a resumed stream were evicted from the log before the resume; `missed` counts them. */
export interface GapFrame {
  t: 'gap'
  ch: number
  missed: number
}
export const EXIT_REASONS = ['server_exit', 'deleted', 'idle', 'shutdown'] as const
export type ExitReason = (typeof EXIT_REASONS)[number]
/** The session is over: the server exited, the session was deleted, idled out or stopped. */
export interface ExitFrame extends EvictionReport {
  t: 'exit'
  reason: ExitReason
  code?: number | null
  signal?: string | null
  /**
   * How long the session ran. On one connection's copy only (every connection gets `exit`), so
   * the bridge that receives it counts the session's end exactly once.
   */
  ageMs?: number
}
export type SidecarFrameHeader =
  EventFrame | EndFrame | AckFrame | ErrorFrame | GapFrame | ExitFrame

/** A decoded frame: its validated header and the raw payload text, if any. */
export interface Frame<H> {
  header: H
  payload: string | undefined
}

/** Encodes a frame: the header as JSON, then a newline and the payload when there is one. */
export const encodeFrame = (header: BridgeFrameHeader | SidecarFrameHeader, payload?: string) =>
  payload === undefined ? JSON.stringify(header) : `${JSON.stringify(header)}\n${payload}`

type Fields = Record<string, unknown>
type Check = (header: Fields) => boolean

const isChannel = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0
const isShortString = (max: number) => (value: unknown) =>
  typeof value === 'string' && value.length <= max
const optional = (check: (value: unknown) => boolean) => (value: unknown) =>
  value === undefined || check(value)
const oneOf = (values: readonly string[]) => (value: unknown) =>
  typeof value === 'string' && values.includes(value)
const hasTrace: Check = (h) =>
  optional(isShortString(128))(h.tp) && optional(isShortString(512))(h.ts)
const isCount = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0
const hasEvictions: Check = (h) => optional(isCount)(h.evicted)

// Hand-written rather than a schema library: this runs on every frame on both
// sides, and it keeps the sidecar bundle small and quick to start.
const bridgeChecks: Record<BridgeFrameHeader['t'], Check> = {
  req: hasTrace,
  msg: hasTrace,
  get: (h) => optional(isShortString(256))(h.after),
  detach: () => true,
  bye: () => true,
}
const sidecarChecks: Record<Exclude<SidecarFrameHeader['t'], 'exit'>, Check> = {
  ev: (h) =>
    typeof h.id === 'string' &&
    optional((v) => v === 1)(h.fin) &&
    hasTrace(h) &&
    optional(isShortString(32))(h.errorType) &&
    hasEvictions(h),
  end: (h) => oneOf(END_REASONS)(h.reason),
  ack: () => true,
  err: (h) => oneOf(FRAME_ERROR_CODES)(h.code) && typeof h.message === 'string',
  gap: (h) => isCount(h.missed),
}
const isExit: Check = (h) =>
  oneOf(EXIT_REASONS)(h.reason) &&
  optional((v) => v === null || Number.isSafeInteger(v))(h.code) &&
  optional((v) => v === null || typeof v === 'string')(h.signal) &&
  hasEvictions(h) &&
  optional(isCount)(h.ageMs)

const validBridgeHeader = (h: Fields): h is Fields & BridgeFrameHeader => {
  const check = bridgeChecks[h.t as BridgeFrameHeader['t']]
  return (
    check !== undefined && Object.hasOwn(bridgeChecks, h.t as string) && isChannel(h.ch) && check(h)
  )
}
const validSidecarHeader = (h: Fields): h is Fields & SidecarFrameHeader => {
  if (h.t === 'exit') return isExit(h)
  const check = sidecarChecks[h.t as keyof typeof sidecarChecks]
  return (
    check !== undefined &&
    Object.hasOwn(sidecarChecks, h.t as string) &&
    isChannel(h.ch) &&
    check(h)
  )
}

const decodeWith =
  <H>(valid: (header: Fields) => boolean) =>
  (text: string): Frame<H> | undefined => {
    // JSON text never contains a raw newline outside whitespace, and encodeFrame
    // writes the header without any, so the first newline ends the header.
    const cut = text.indexOf('\n')
    let raw: unknown
    try {
      raw = JSON.parse(cut === -1 ? text : text.slice(0, cut))
    } catch {
      return undefined
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !valid(raw as Fields)) {
      return undefined
    }
    return { header: raw as H, payload: cut === -1 ? undefined : text.slice(cut + 1) }
  }

/** Decodes a frame sent by the bridge; undefined when it is malformed. */
export const decodeBridgeFrame = decodeWith<BridgeFrameHeader>(validBridgeHeader)
/** Decodes a frame sent by the sidecar; undefined when it is malformed. */
export const decodeSidecarFrame = decodeWith<SidecarFrameHeader>(validSidecarHeader)
