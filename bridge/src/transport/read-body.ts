/**
 * @module
 * Reads a request body as text within a size limit. A body with a
 * Content-Length is checked against the limit before it is read, and read with
 * `Request.text()` (which Node adapters serve without building a web stream);
 * only a chunked body is streamed and counted as it arrives.
 */
import { ErrorCode } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'

const tooLarge = (limit: number) =>
  new FerryHTTPError(
    413,
    ErrorCode.InvalidRequest,
    `Payload Too Large: the limit is ${limit} bytes`
  )

export const readBody = async (request: Request, limit: number): Promise<string> => {
  const length = request.headers.get('content-length')
  if (length !== null && !request.headers.has('transfer-encoding')) {
    if (Number(length) > limit) throw tooLarge(limit)
    return request.text()
  }
  if (!request.body) return ''
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel()
      throw tooLarge(limit)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}
