/**
 * @module test/k8s/faults
 *
 * Programmatic fault injection for the fake API server: answer the next N matching calls with
 * 403/409/422/429/500/503 (429 and 503 carry `Retry-After`), delay them, or decide per call in a
 * hook. This is how tests prove the code under test retries what is safe and fails clearly.
 */
import { faultStatus, StatusError } from './status.ts'
import type { Resource } from './types.ts'

export type Verb =
  'create' | 'get' | 'list' | 'watch' | 'update' | 'patch' | 'delete' | 'deletecollection'

/** A resource, optionally with its subresource (`pods/status`, `pods/log`, `pods/binding`). */
export type FaultResource = Resource | `${Resource}/${string}` | '*'

/** What the server knows about a request when it consults faults and hooks. */
export interface RequestInfo {
  method: string
  path: string
  verb: Verb
  resource: Resource
  subresource: string | undefined
  namespace: string | undefined
  name: string | undefined
  query: URLSearchParams
  headers: Record<string, string | string[] | undefined>
  /** The authenticated user name (`system:anonymous` without authentication). */
  user: string
}

export interface FaultOptions {
  /** Sent as `Retry-After` (and `details.retryAfterSeconds`) with 429 and 503. Default 1. */
  retryAfterSeconds?: number
  /** Replaces the canned message. */
  message?: string
  /** Only calls by this user match (e.g. spare the kubelet simulator's own calls). */
  user?: string
}

/** A hook's verdict: answer with a status now, or wait first and then carry on (or fail). */
export type HookResult =
  | { status: number; retryAfterSeconds?: number; message?: string; delayMs?: number }
  | { delayMs: number; status?: undefined }
  | undefined
  | void

export type RequestHook = (request: RequestInfo) => HookResult | Promise<HookResult>

interface Rule {
  verb: Verb | '*'
  resource: FaultResource
  remaining: number
  status?: number
  delayMs?: number
  options: FaultOptions
}

const resourceMatches = (pattern: FaultResource, request: RequestInfo) => {
  if (pattern === '*') return true
  const full = request.subresource ? `${request.resource}/${request.subresource}` : request.resource
  return pattern === full
}

export class FaultInjector {
  private rules: Rule[] = []
  private readonly hooks = new Set<RequestHook>()

  /** Answers the next `times` calls matching `verb` and `resource` with `status`. */
  failNext(
    verb: Verb | '*',
    resource: FaultResource,
    status: number,
    times = 1,
    options: FaultOptions = {}
  ) {
    this.rules.push({ verb, resource, remaining: times, status, options })
  }

  /** Holds the next `times` matching calls for `ms` before serving them normally. */
  delayNext(
    verb: Verb | '*',
    resource: FaultResource,
    ms: number,
    times = 1,
    options: FaultOptions = {}
  ) {
    this.rules.push({ verb, resource, remaining: times, delayMs: ms, options })
  }

  /** Consulted on every authenticated request, after the `failNext` rules. Returns a remover. */
  addHook(hook: RequestHook): () => void {
    this.hooks.add(hook)
    return () => this.hooks.delete(hook)
  }

  /** Forgets all pending rules and hooks. */
  clear() {
    this.rules = []
    this.hooks.clear()
  }

  /** Pending rules that have not fired yet (so a test can assert they were all used). */
  get pending(): number {
    return this.rules.reduce((sum, rule) => sum + rule.remaining, 0)
  }

  private build(request: RequestInfo, status: number, options: FaultOptions): StatusError {
    const error = faultStatus(
      status,
      request.verb,
      request.subresource ? `${request.resource}` : request.resource,
      request.namespace,
      request.name,
      request.user,
      options.retryAfterSeconds
    )
    if (!options.message) return error
    return new StatusError(error.code, error.reason, options.message, error.details, error.headers)
  }

  /** Returns the error to answer with, if any; waits out injected delays first. */
  async check(request: RequestInfo): Promise<StatusError | undefined> {
    const rule = this.rules.find(
      (candidate) =>
        candidate.remaining > 0 &&
        (candidate.options.user === undefined || candidate.options.user === request.user) &&
        (candidate.verb === '*' || candidate.verb === request.verb) &&
        resourceMatches(candidate.resource, request)
    )
    if (rule) {
      rule.remaining -= 1
      this.rules = this.rules.filter((candidate) => candidate.remaining > 0)
      if (rule.delayMs !== undefined)
        await new Promise((resolve) => setTimeout(resolve, rule.delayMs))
      if (rule.status !== undefined) return this.build(request, rule.status, rule.options)
    }
    for (const hook of [...this.hooks]) {
      const result = await hook(request)
      if (!result) continue
      if (result.delayMs) await new Promise((resolve) => setTimeout(resolve, result.delayMs))
      if (result.status !== undefined) {
        return this.build(request, result.status, {
          ...(result.retryAfterSeconds !== undefined
            ? { retryAfterSeconds: result.retryAfterSeconds }
            : {}),
          ...(result.message !== undefined ? { message: result.message } : {}),
        })
      }
    }
    return undefined
  }
}
