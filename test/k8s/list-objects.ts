/**
 * @module test/k8s/list-objects
 *
 * `GET` on a collection: label and field selectors, `limit`/`continue` paging (a continue token
 * older than the kept history is 410 Expired), and a `…List` body whose items, as on the real
 * server, carry no kind/apiVersion of their own.
 */
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'
import { badRequest, expired } from './status.ts'
import type { ObjectStore } from './store.ts'
import { type KubeObject, type Resource, apiVersionOf, RESOURCES } from './types.ts'

export const listObjects = (
  store: ObjectStore,
  resource: Resource,
  namespace: string | undefined,
  query: URLSearchParams
) => {
  const labels = parseLabelSelector(query.get('labelSelector'))
  const fields = parseFieldSelector(query.get('fieldSelector'), resource)
  let items = store.list(resource, namespace).filter((object) => labels(object) && fields(object))
  const resourceVersion = String(store.resourceVersion)
  const token = query.get('continue')
  if (token) {
    let position: { rv: number; after: string }
    try {
      position = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
    } catch {
      throw badRequest('continue key is not valid: illegal base64 data')
    }
    if (position.rv < store.oldestWatchable) throw expired(position.rv, store.oldestWatchable + 1)
    items = items.filter(
      (item) => `${item.metadata?.namespace}/${item.metadata?.name}` > position.after
    )
  }
  const limit = Number(query.get('limit') ?? 0)
  const metadata: Record<string, unknown> = { resourceVersion }
  if (limit > 0 && items.length > limit) {
    const last = items[limit - 1]!
    metadata.continue = Buffer.from(
      JSON.stringify({
        rv: store.resourceVersion,
        after: `${last.metadata?.namespace}/${last.metadata?.name}`,
      })
    ).toString('base64url')
    metadata.remainingItemCount = items.length - limit
    items = items.slice(0, limit)
  }
  // Like the real server, list items carry no kind/apiVersion of their own.
  const bare = items.map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest as KubeObject)
  return {
    kind: `${RESOURCES[resource].kind}List`,
    apiVersion: apiVersionOf(resource),
    metadata,
    items: bare,
  }
}
