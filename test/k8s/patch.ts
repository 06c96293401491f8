/**
 * @module test/k8s/patch
 *
 * `PATCH` bodies: JSON merge patch (RFC 7386), strategic merge patch treated as a merge patch
 * (list merging by key is not modelled), and JSON patch (RFC 6902: add, remove, replace, test).
 */
import { StatusError, unsupportedMediaType } from './status.ts'

type JsonObject = Record<string, unknown>

const isObject = (value: unknown): value is JsonObject =>
  value !== null && typeof value === 'object' && !Array.isArray(value)

/** RFC 7386: objects merge recursively, `null` deletes, everything else replaces. */
export const mergePatch = (target: unknown, patch: unknown): unknown => {
  if (!isObject(patch)) return patch
  const out: JsonObject = isObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key]
    else out[key] = mergePatch(out[key], value)
  }
  return out
}

const unescape = (token: string) => token.replace(/~1/g, '/').replace(/~0/g, '~')

const fail = (message: string) => new StatusError(422, 'Invalid', message)

interface Operation {
  op: string
  path: string
  value?: unknown
}

/** RFC 6902 for the operations clients actually send against Jobs and Pods. */
export const jsonPatch = (target: unknown, operations: unknown): unknown => {
  if (!Array.isArray(operations)) {
    throw new StatusError(
      400,
      'BadRequest',
      'json: cannot unmarshal object into Go value of type jsonpatch.Patch'
    )
  }
  let document = structuredClone(target)
  for (const operation of operations as Operation[]) {
    const tokens = operation.path.split('/').slice(1).map(unescape)
    if (tokens.length === 0) {
      if (operation.op === 'replace' || operation.op === 'add') document = operation.value
      continue
    }
    let parent: unknown = document
    for (const token of tokens.slice(0, -1)) {
      parent = Array.isArray(parent)
        ? parent[Number(token)]
        : isObject(parent)
          ? parent[token]
          : undefined
      if (parent === undefined)
        throw fail(
          `the server rejected our request due to an error in our request: missing path ${operation.path}`
        )
    }
    const last = tokens[tokens.length - 1]!
    const container = parent as JsonObject | unknown[]
    const index = Array.isArray(container) ? (last === '-' ? container.length : Number(last)) : -1
    switch (operation.op) {
      case 'add':
        if (Array.isArray(container)) container.splice(index, 0, operation.value)
        else container[last] = operation.value
        break
      case 'replace':
      case 'remove': {
        const exists = Array.isArray(container) ? index < container.length : last in container
        if (!exists)
          throw fail(
            `the server rejected our request due to an error in our request: path ${operation.path} does not exist`
          )
        if (operation.op === 'remove') {
          if (Array.isArray(container)) container.splice(index, 1)
          else delete container[last]
        } else if (Array.isArray(container)) container[index] = operation.value
        else container[last] = operation.value
        break
      }
      case 'test': {
        const actual = Array.isArray(container) ? container[index] : container[last]
        if (JSON.stringify(actual) !== JSON.stringify(operation.value)) {
          throw fail(
            `the server rejected our request due to an error in our request: testing value ${operation.path} failed`
          )
        }
        break
      }
      default:
        throw fail(`Unexpected kind: ${operation.op}`)
    }
  }
  return document
}

/** Applies a PATCH body according to its Content-Type. */
export const applyPatch = (target: unknown, body: unknown, contentType: string): unknown => {
  const type = contentType.split(';')[0]!.trim()
  switch (type) {
    case 'application/merge-patch+json':
    case 'application/strategic-merge-patch+json':
      if (!isObject(body))
        throw new StatusError(400, 'BadRequest', 'patch body must be a JSON object')
      return mergePatch(target, body)
    case 'application/json-patch+json':
      return jsonPatch(target, body)
    default:
      throw unsupportedMediaType(type)
  }
}
