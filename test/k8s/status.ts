/**
 * @module test/k8s/status
 *
 * `metav1.Status` error bodies, worded like the real API server, so code under test can branch on
 * `reason`/`code` and show the same messages it would show against a cluster.
 */
import { type Resource, RESOURCES, qualifiedKind, qualifiedResource } from './types.ts'

export interface StatusCause {
  reason: string
  message: string
  field: string
}

export interface StatusDetails {
  name?: string
  group?: string
  kind?: string
  uid?: string
  causes?: StatusCause[]
  retryAfterSeconds?: number
}

export interface StatusBody {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, never>
  status: 'Failure' | 'Success'
  message?: string
  reason?: string
  details?: StatusDetails
  code: number
}

/** Thrown inside the fake; the HTTP layer turns it into a Status response. */
export class StatusError extends Error {
  readonly code: number
  readonly reason: string
  readonly details: StatusDetails | undefined
  readonly headers: Record<string, string>

  constructor(
    code: number,
    reason: string,
    message: string,
    details?: StatusDetails,
    headers: Record<string, string> = {}
  ) {
    super(message)
    this.code = code
    this.reason = reason
    this.details = details
    this.headers = headers
  }

  get body(): StatusBody {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    }
  }
}

const detailsFor = (resource: Resource, name?: string): StatusDetails => ({
  ...(name !== undefined ? { name } : {}),
  ...(RESOURCES[resource].group ? { group: RESOURCES[resource].group } : {}),
  kind: resource,
})

export const notFound = (resource: Resource, name: string): StatusError =>
  new StatusError(
    404,
    'NotFound',
    `${qualifiedResource(resource)} "${name}" not found`,
    detailsFor(resource, name)
  )

export const alreadyExists = (resource: Resource, name: string): StatusError =>
  new StatusError(
    409,
    'AlreadyExists',
    `${qualifiedResource(resource)} "${name}" already exists`,
    detailsFor(resource, name)
  )

export const conflict = (resource: Resource, name: string, why: string): StatusError =>
  new StatusError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualifiedResource(resource)} "${name}": ${why}`,
    detailsFor(resource, name)
  )

/** The optimistic-concurrency conflict every `update` can hit. */
export const staleResourceVersion = (resource: Resource, name: string): StatusError =>
  conflict(
    resource,
    name,
    'the object has been modified; please apply your changes to the latest version and try again'
  )

/** 422 with one cause per field, message shaped `Kind.group "name" is invalid: …`. */
export const invalid = (resource: Resource, name: string, causes: StatusCause[]): StatusError => {
  const parts = causes.map((cause) => `${cause.field}: ${cause.message}`)
  const summary = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`
  return new StatusError(
    422,
    'Invalid',
    `${qualifiedKind(resource)} "${name}" is invalid: ${summary}`,
    { ...detailsFor(resource, name), kind: RESOURCES[resource].kind, causes }
  )
}

export const forbidden = (resource: Resource, name: string, why: string): StatusError =>
  new StatusError(
    403,
    'Forbidden',
    `${qualifiedResource(resource)}${name ? ` "${name}"` : ''} is forbidden: ${why}`,
    detailsFor(resource, name || undefined)
  )

export const badRequest = (message: string): StatusError =>
  new StatusError(400, 'BadRequest', message)

export const unauthorized = (): StatusError => new StatusError(401, 'Unauthorized', 'Unauthorized')

export const methodNotAllowed = (method: string): StatusError =>
  new StatusError(405, 'MethodNotAllowed', `the server does not allow this method (${method})`)

export const unsupportedMediaType = (type: string): StatusError =>
  new StatusError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${type})`
  )

/** 410 for a watch or list that asks for history the server no longer keeps. */
export const expired = (requested: number, oldest: number): StatusError =>
  new StatusError(410, 'Expired', `too old resource version: ${requested} (${oldest})`)

/** Canned bodies for injected faults, worded like the component that would really answer. */
export const faultStatus = (
  code: number,
  verb: string,
  resource: Resource | '*',
  namespace: string | undefined,
  name: string | undefined,
  user = 'system:anonymous',
  retryAfterSeconds = 1
): StatusError => {
  const res = resource === '*' ? 'resources' : resource
  const qualified = resource === '*' ? 'resources' : qualifiedResource(resource)
  const group = resource === '*' ? '' : RESOURCES[resource].group
  switch (code) {
    case 401:
      return unauthorized()
    case 403:
      return new StatusError(
        403,
        'Forbidden',
        `${qualified}${name ? ` "${name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${res}" in API group "${group}"${namespace ? ` in the namespace "${namespace}"` : ''}`
      )
    case 404:
      return new StatusError(404, 'NotFound', `${qualified} "${name ?? ''}" not found`)
    case 409:
      return verb === 'create'
        ? new StatusError(409, 'AlreadyExists', `${qualified} "${name ?? ''}" already exists`)
        : new StatusError(
            409,
            'Conflict',
            `Operation cannot be fulfilled on ${qualified} "${name ?? ''}": the object has been modified; please apply your changes to the latest version and try again`
          )
    case 422:
      return new StatusError(
        422,
        'Invalid',
        `${qualified} "${name ?? ''}" is invalid: metadata.name: Invalid value: "${name ?? ''}": injected fault`,
        {
          causes: [
            { reason: 'FieldValueInvalid', message: 'injected fault', field: 'metadata.name' },
          ],
        }
      )
    case 429:
      return new StatusError(
        429,
        'TooManyRequests',
        'Too many requests, please try again later.',
        { retryAfterSeconds },
        { 'Retry-After': String(retryAfterSeconds) }
      )
    case 500:
      return new StatusError(500, 'InternalError', 'Internal error occurred: injected fault', {
        causes: [{ reason: '', message: 'injected fault', field: '' }],
      })
    case 503:
      return new StatusError(
        503,
        'ServiceUnavailable',
        'The server is currently unable to handle the request',
        { retryAfterSeconds },
        { 'Retry-After': String(retryAfterSeconds) }
      )
    case 504:
      return new StatusError(
        504,
        'Timeout',
        'Timeout: request did not complete within requested timeout'
      )
    default:
      return new StatusError(code, 'Unknown', `injected fault ${code}`)
  }
}
