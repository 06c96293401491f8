/**
 * @module test/k8s/routes
 *
 * Maps an API request (method, path, query) to the verb, resource, namespace, name and
 * subresource the real API server's request-info resolver would find, for the paths Ferry and
 * the kubelet simulator use.
 */
import type { Verb } from './faults.ts'
import { RESOURCES, type Resource } from './types.ts'

export interface Route {
  verb: Verb
  resource: Resource
  namespace: string | undefined
  name: string | undefined
  subresource: string | undefined
}

export type ParsedPath =
  | { kind: 'resource'; route: Route }
  | { kind: 'namespace'; name: string }
  | { kind: 'info'; path: string }
  | { kind: 'unknown' }

const INFO_PATHS = [
  '/version',
  '/healthz',
  '/readyz',
  '/livez',
  '/api',
  '/apis',
  '/api/v1',
  '/apis/batch/v1',
]

const verbFor = (method: string, name: string | undefined, watch: boolean): Verb | undefined => {
  switch (method) {
    case 'GET':
      if (name) return watch ? 'watch' : 'get'
      return watch ? 'watch' : 'list'
    case 'POST':
      return 'create'
    case 'PUT':
      return name ? 'update' : undefined
    case 'PATCH':
      return name ? 'patch' : undefined
    case 'DELETE':
      return name ? 'delete' : 'deletecollection'
    default:
      return undefined
  }
}

/** Resolves `/api/v1/…` and `/apis/batch/v1/…` paths; anything else is `info` or `unknown`. */
export const parsePath = (method: string, pathname: string, query: URLSearchParams): ParsedPath => {
  const trimmed = pathname.replace(/\/+$/, '') || '/'
  if (INFO_PATHS.includes(trimmed)) return { kind: 'info', path: trimmed }
  const segments = trimmed.split('/').slice(1).map(decodeURIComponent)
  let group: string
  let rest: string[]
  if (segments[0] === 'api' && segments[1] === 'v1') {
    group = ''
    rest = segments.slice(2)
  } else if (segments[0] === 'apis' && segments[1] === 'batch' && segments[2] === 'v1') {
    group = 'batch'
    rest = segments.slice(3)
  } else return { kind: 'unknown' }

  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest[1] !== undefined) {
    namespace = rest[1]
    rest = rest.slice(2)
    if (rest.length === 0 && group === '') return { kind: 'namespace', name: namespace }
  }
  const [resourceName, name, subresource, ...extra] = rest
  if (!resourceName || extra.length) return { kind: 'unknown' }
  const resource = resourceName as Resource
  if (!(resource in RESOURCES) || RESOURCES[resource].group !== group) return { kind: 'unknown' }
  // A subresource without a name (`/pods//log`) or on an unsupported resource is not served.
  const served =
    resource === 'pods' ? ['status', 'log', 'binding'] : resource === 'jobs' ? ['status'] : []
  if (subresource && (!name || !served.includes(subresource))) return { kind: 'unknown' }
  const watch = query.get('watch') === 'true' || query.get('watch') === '1'
  const verb = verbFor(method, name, watch && !subresource)
  if (!verb) return { kind: 'unknown' }
  return { kind: 'resource', route: { verb, resource, namespace, name, subresource } }
}
