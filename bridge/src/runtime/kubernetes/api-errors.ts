/**
 * @module
 * What a failed Kubernetes API call means for a session start: whether to try
 * again, after how long, and the clear message the client gets otherwise.
 */

export interface ApiFailure {
  /** HTTP status, or 0 when the API server was not reached. */
  status: number
  /** The Status reason (`AlreadyExists`, `Forbidden`, …), when there is one. */
  reason?: string
  /** The API server's own words, which name the permission or the invalid field. */
  message: string
  /** Worth another try: throttling, server errors, no connection. */
  retryable: boolean
  /** Seconds the server asked to wait (429 `Retry-After`). */
  retryAfterSeconds?: number
}

interface ApiExceptionLike {
  code: number
  body?: unknown
  headers?: Record<string, string>
  message?: string
}

const isApiException = (error: unknown): error is ApiExceptionLike =>
  typeof error === 'object' &&
  error !== null &&
  typeof (error as { code?: unknown }).code === 'number' &&
  'body' in error

const statusOf = (body: unknown): { reason?: string; message?: string } => {
  if (typeof body !== 'string') return typeof body === 'object' && body ? (body as object) : {}
  try {
    return JSON.parse(body) as { reason?: string; message?: string }
  } catch {
    return { message: body.slice(0, 300) }
  }
}

/** `Watch` rejects a non-200 answer with `Error(statusText)` carrying `statusCode`. */
const watchStatus = (error: unknown): number | undefined => {
  const code = (error as { statusCode?: unknown } | null)?.statusCode
  return typeof code === 'number' && code >= 400 ? code : undefined
}

const retryableStatus = (status: number) => status === 429 || status >= 500

/**
 * Reads an error from `@kubernetes/client-node`: an ApiException, a refused `Watch`
 * (which has only the status line), or a transport error.
 */
export const apiFailure = (error: unknown): ApiFailure => {
  const watchCode = watchStatus(error)
  if (watchCode !== undefined) {
    return {
      status: watchCode,
      message: `HTTP ${watchCode} ${(error as Error).message ?? ''}`.trim(),
      retryable: retryableStatus(watchCode),
    }
  }
  if (isApiException(error)) {
    const { reason, message } = statusOf(error.body)
    const status = error.code
    const retryAfter = Number(error.headers?.['retry-after'])
    return {
      status,
      reason,
      message: message ?? `HTTP ${status}`,
      retryable: retryableStatus(status),
      ...(Number.isFinite(retryAfter) ? { retryAfterSeconds: retryAfter } : {}),
    }
  }
  const cause = (error as { cause?: { code?: string } })?.cause
  const code = cause?.code ?? (error as { code?: unknown })?.code
  return {
    status: 0,
    message: `cannot reach the Kubernetes API: ${typeof code === 'string' ? code : (error as Error)?.message}`,
    retryable: true,
  }
}

/**
 * Exponential backoff with jitter for attempt `n` (0-based), honouring `Retry-After`:
 * never shorter than the server asked (up to 10 s), never a tight loop (a `Retry-After: 0`
 * still waits the backoff).
 */
export const backoffMs = (attempt: number, failure: ApiFailure): number => {
  const base = Math.min(5_000, 200 * 2 ** attempt)
  const backoff = Math.round(base * (0.5 + Math.random() / 2))
  if (failure.retryAfterSeconds === undefined) return backoff
  return Math.min(10_000, Math.max(backoff, failure.retryAfterSeconds * 1000))
}
