/**
 * @module
 * The one error type the HTTP layer turns into a response: an HTTP status with a
 * JSON-RPC error body (id null), plus any headers the status calls for. Anything
 * else thrown is an internal error and answers 500 without details.
 */
import { type JSONRPCId, errorResponse } from '@ferry/shared'

export class FerryHTTPError extends Error {
  readonly status: number
  readonly code: number
  readonly data: unknown
  readonly headers: Record<string, string>
  readonly id: JSONRPCId | null

  constructor(
    status: number,
    code: number,
    message: string,
    options: { data?: unknown; headers?: Record<string, string>; id?: JSONRPCId | null } = {}
  ) {
    super(message)
    this.name = 'FerryHTTPError'
    this.status = status
    this.code = code
    this.data = options.data
    this.headers = options.headers ?? {}
    this.id = options.id ?? null
  }

  toResponse(): Response {
    return new Response(
      JSON.stringify(errorResponse(this.id, this.code, this.message, this.data)),
      {
        status: this.status,
        headers: { 'content-type': 'application/json', ...this.headers },
      }
    )
  }
}
