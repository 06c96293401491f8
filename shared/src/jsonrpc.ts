/**
 * @module
 * JSON-RPC 2.0 as MCP uses it: message classification, error codes and builders.
 * Classification is hand-written rather than a zod parse because it runs on every
 * message on both sides of the relay; it checks exactly what routing relies on.
 */

export type JSONRPCId = string | number

export interface JSONRPCRequest {
  jsonrpc: '2.0'
  id: JSONRPCId
  method: string
  params?: Record<string, unknown>
}

export interface JSONRPCNotification {
  jsonrpc: '2.0'
  method: string
  params?: Record<string, unknown>
}

export interface JSONRPCErrorObject {
  code: number
  message: string
  data?: unknown
}

export interface JSONRPCResultResponse {
  jsonrpc: '2.0'
  id: JSONRPCId
  result: Record<string, unknown>
}

export interface JSONRPCErrorResponse {
  jsonrpc: '2.0'
  id: JSONRPCId | null
  error: JSONRPCErrorObject
}

export type JSONRPCResponse = JSONRPCResultResponse | JSONRPCErrorResponse
export type JSONRPCMessage = JSONRPCRequest | JSONRPCNotification | JSONRPCResponse

/** A message tagged with its kind, so callers switch once instead of probing fields. */
export type ClassifiedMessage =
  | { kind: 'request'; message: JSONRPCRequest }
  | { kind: 'notification'; message: JSONRPCNotification }
  | { kind: 'response'; message: JSONRPCResponse }

/** Standard and MCP-specific JSON-RPC error codes Ferry emits. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Generic server-side failure (workload, relay). */
  ServerError: -32000,
  /** MCP SDK convention for an unknown session. */
  SessionNotFound: -32001,
  /** 2026-07-28: unsupported protocol version. */
  UnsupportedProtocolVersion: -32022,
} as const

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const isId = (value: unknown): value is JSONRPCId =>
  typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))

/**
 * Classifies a parsed JSON value as one JSON-RPC 2.0 message, or returns undefined
 * when it is not one.
 */
export const classifyMessage = (value: unknown): ClassifiedMessage | undefined => {
  if (!isObject(value) || value.jsonrpc !== '2.0') return undefined
  if ('params' in value && value.params !== undefined && !isObject(value.params)) return undefined
  if (typeof value.method === 'string') {
    if ('id' in value) {
      return isId(value.id)
        ? { kind: 'request', message: value as unknown as JSONRPCRequest }
        : undefined
    }
    return { kind: 'notification', message: value as unknown as JSONRPCNotification }
  }
  if ('result' in value) {
    return isId(value.id) && isObject(value.result) && !('error' in value)
      ? { kind: 'response', message: value as unknown as JSONRPCResultResponse }
      : undefined
  }
  if ('error' in value) {
    const error = value.error
    const idOk = isId(value.id) || value.id === null
    return idOk &&
      isObject(error) &&
      typeof error.code === 'number' &&
      typeof error.message === 'string'
      ? { kind: 'response', message: value as unknown as JSONRPCErrorResponse }
      : undefined
  }
  return undefined
}

/** Builds an error response; `id` is null when the request id is unknown. */
export const errorResponse = (
  id: JSONRPCId | null,
  code: number,
  message: string,
  data?: unknown
): JSONRPCErrorResponse => ({
  jsonrpc: '2.0',
  id,
  error: data === undefined ? { code, message } : { code, message, data },
})

/** The `_meta` object of a request or notification, if it has one. */
export const metaOf = (
  message: JSONRPCRequest | JSONRPCNotification
): Record<string, unknown> | undefined => {
  const meta = message.params?._meta
  return isObject(meta) ? meta : undefined
}

/** The progress token a request declared in `params._meta.progressToken`. */
export const progressTokenOf = (message: JSONRPCRequest): JSONRPCId | undefined => {
  const token = metaOf(message)?.progressToken
  return isId(token) ? token : undefined
}
