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
import { z } from 'zod'

/** WebSocket subprotocol spoken by bridge and sidecar; bumped on incompatible changes. */
export const FRAME_PROTOCOL = 'ferry.v1'

/** Header names of the WebSocket upgrade request. */
export const UpgradeHeader = {
  /** The session (workload) name the sidecar was started for. */
  session: 'x-ferry-session',
  /** The per-session secret, as `Bearer <secret>` in `authorization`. */
  authorization: 'authorization',
} as const

const channel = z.number().int().nonnegative()
const traceFields = {
  /** W3C traceparent of the bridge span that carried this message. */
  tp: z.string().max(128).optional(),
  /** W3C tracestate accompanying `tp`. */
  ts: z.string().max(512).optional(),
}

/** A client request: opens the request's stream in the sidecar. Payload: the request. */
export const RequestFrameSchema = z.object({ t: z.literal('req'), ch: channel, ...traceFields })
/** A client notification or response. Payload: the message. Answered by `ack` or `err`. */
export const MessageFrameSchema = z.object({ t: z.literal('msg'), ch: channel, ...traceFields })
/**
 * Attaches a channel to a stream: without `after`, the standalone (GET) stream,
 * taking it over from whichever channel held it; with `after`, the stream that
 * event id belongs to, replaying what followed it.
 */
export const AttachFrameSchema = z.object({
  t: z.literal('get'),
  ch: channel,
  after: z.string().max(256).optional(),
})
/** The bridge no longer listens on a channel (client gone, or connection closed for polling). */
export const DetachFrameSchema = z.object({ t: z.literal('detach'), ch: channel })
/** Ends the session (HTTP DELETE). Answered by `ack`, then `exit` to every connection. */
export const TerminateFrameSchema = z.object({ t: z.literal('bye'), ch: channel })

export const BridgeFrameHeaderSchema = z.discriminatedUnion('t', [
  RequestFrameSchema,
  MessageFrameSchema,
  AttachFrameSchema,
  DetachFrameSchema,
  TerminateFrameSchema,
])
export type BridgeFrameHeader = z.infer<typeof BridgeFrameHeaderSchema>

/** One SSE event for a channel. Payload: the message. `fin` marks the response that ends a POST stream. */
export const EventFrameSchema = z.object({
  t: z.literal('ev'),
  ch: channel,
  id: z.string(),
  fin: z.literal(1).optional(),
  ...traceFields,
})
/** The channel's stream has nothing more (complete, cancelled, or taken over by another channel). */
export const EndFrameSchema = z.object({
  t: z.literal('end'),
  ch: channel,
  reason: z.enum(['complete', 'cancelled', 'takeover', 'session']),
})
/** A `msg` or `bye` was accepted. */
export const AckFrameSchema = z.object({ t: z.literal('ack'), ch: channel })
/** A channel's frame was refused; `code` says why. */
export const ErrorFrameSchema = z.object({
  t: z.literal('err'),
  ch: channel,
  code: z.enum(['bad_message', 'duplicate_id', 'unknown_stream', 'not_running']),
  message: z.string(),
})
/** Events of a resumed stream were evicted from the log before the resume; `missed` counts them. */
export const GapFrameSchema = z.object({
  t: z.literal('gap'),
  ch: channel,
  missed: z.number().int().nonnegative(),
})
/** The session is over: the server exited, the session was deleted, idled out or stopped. */
export const ExitFrameSchema = z.object({
  t: z.literal('exit'),
  reason: z.enum(['server_exit', 'deleted', 'idle', 'shutdown']),
  code: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
})

export const SidecarFrameHeaderSchema = z.discriminatedUnion('t', [
  EventFrameSchema,
  EndFrameSchema,
  AckFrameSchema,
  ErrorFrameSchema,
  GapFrameSchema,
  ExitFrameSchema,
])
export type SidecarFrameHeader = z.infer<typeof SidecarFrameHeaderSchema>
export type ExitReason = z.infer<typeof ExitFrameSchema>['reason']
export type FrameErrorCode = z.infer<typeof ErrorFrameSchema>['code']

/** A decoded frame: its validated header and the raw payload text, if any. */
export interface Frame<H> {
  header: H
  payload: string | undefined
}

/** Encodes a frame: the header as JSON, then a newline and the payload when there is one. */
export const encodeFrame = (header: BridgeFrameHeader | SidecarFrameHeader, payload?: string) =>
  payload === undefined ? JSON.stringify(header) : `${JSON.stringify(header)}\n${payload}`

const decodeWith =
  <H>(schema: z.ZodType<H>) =>
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
    const parsed = schema.safeParse(raw)
    if (!parsed.success) return undefined
    return { header: parsed.data, payload: cut === -1 ? undefined : text.slice(cut + 1) }
  }

/** Decodes a frame sent by the bridge; undefined when it is malformed. */
export const decodeBridgeFrame = decodeWith(BridgeFrameHeaderSchema)
/** Decodes a frame sent by the sidecar; undefined when it is malformed. */
export const decodeSidecarFrame = decodeWith(SidecarFrameHeaderSchema)
