/**
 * @module test/k8s/selectors
 *
 * Label and field selectors with the real API server's syntax and matching rules, so list and
 * watch calls filter exactly as they would against a cluster (`!=`/`notin` also match objects
 * that lack the label; unknown field labels are a 400).
 */
import { badRequest } from './status.ts'
import type { KubeObject, Resource } from './types.ts'

type Requirement =
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: 'gt' | 'lt'; value: number }

export type Matcher = (object: KubeObject) => boolean

const KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** Splits on commas that are not inside `( … )`. */
const splitTopLevel = (text: string): string[] => {
  const parts: string[] = []
  let depth = 0
  let current = ''
  for (const char of text) {
    if (char === '(') depth++
    if (char === ')') depth--
    if (char === ',' && depth === 0) {
      parts.push(current)
      current = ''
    } else current += char
  }
  parts.push(current)
  return parts.map((part) => part.trim()).filter((part) => part !== '')
}

const checkKey = (key: string, selector: string): string => {
  if (!KEY.test(key) || key.length > 316) {
    throw badRequest(`unable to parse requirement: invalid label key "${key}" in "${selector}"`)
  }
  return key
}

const checkValue = (value: string, selector: string): string => {
  if (!VALUE.test(value) || value.length > 63) {
    throw badRequest(
      `unable to parse requirement: invalid label value: "${value}" in "${selector}"`
    )
  }
  return value
}

const parseRequirement = (text: string, selector: string): Requirement => {
  const set = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(text)
  if (set) {
    const values = set[3]!.split(',').map((value) => checkValue(value.trim(), selector))
    return { key: checkKey(set[1]!, selector), op: set[2] as 'in' | 'notin', values }
  }
  if (text.startsWith('!')) return { key: checkKey(text.slice(1).trim(), selector), op: '!exists' }
  const binary = /^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)$/.exec(text)
  if (binary) {
    const key = checkKey(binary[1]!, selector)
    const operator = binary[2]!
    const raw = binary[3]!.trim()
    if (operator === '>' || operator === '<') {
      const value = Number(raw)
      if (!Number.isInteger(value)) {
        throw badRequest(
          `unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer, got "${raw}"`
        )
      }
      return { key, op: operator === '>' ? 'gt' : 'lt', value }
    }
    const value = checkValue(raw, selector)
    return { key, op: operator === '!=' ? 'notin' : 'in', values: [value] }
  }
  if (/[\s=!<>()]/.test(text)) {
    throw badRequest(
      `couldn't parse the selector string "${selector}": unable to parse requirement: "${text}"`
    )
  }
  return { key: checkKey(text, selector), op: 'exists' }
}

const matches = (labels: Record<string, string>, requirement: Requirement): boolean => {
  const has = Object.prototype.hasOwnProperty.call(labels, requirement.key)
  const value = labels[requirement.key]
  switch (requirement.op) {
    case 'exists':
      return has
    case '!exists':
      return !has
    case 'in':
      return has && requirement.values.includes(value!)
    case 'notin':
      return !has || !requirement.values.includes(value!)
    case 'gt':
      return has && Number(value) > requirement.value
    case 'lt':
      return has && Number(value) < requirement.value
  }
}

/** Parses a label selector (throws a 400 StatusError on bad syntax); empty matches everything. */
export const parseLabelSelector = (selector: string | null | undefined): Matcher => {
  const requirements = splitTopLevel(selector ?? '').map((part) =>
    parseRequirement(part, selector ?? '')
  )
  return (object) => {
    const labels = object.metadata?.labels ?? {}
    return requirements.every((requirement) => matches(labels, requirement))
  }
}

/** The field labels the real server accepts per resource (anything else is a 400). */
const FIELDS: Record<Resource, string[]> = {
  pods: [
    'spec.nodeName',
    'spec.restartPolicy',
    'spec.schedulerName',
    'spec.serviceAccountName',
    'spec.hostNetwork',
    'status.phase',
    'status.podIP',
    'status.nominatedNodeName',
  ],
  jobs: ['status.successful'],
  events: [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
  ],
  secrets: ['type'],
  configmaps: [],
}

const fieldValue = (object: KubeObject, resource: Resource, path: string): string => {
  if (resource === 'jobs' && path === 'status.successful') {
    return String((object as { status?: { succeeded?: number } }).status?.succeeded ?? 0)
  }
  if (resource === 'events' && path === 'source') {
    return String((object as { source?: { component?: string } }).source?.component ?? '')
  }
  let current: unknown = object
  for (const segment of path.split('.')) {
    current =
      current !== null && typeof current === 'object'
        ? (current as Record<string, unknown>)[segment]
        : undefined
  }
  if (current === undefined || current === null) return path === 'spec.hostNetwork' ? 'false' : ''
  return String(current)
}

/** Parses a field selector (`a=b,c!=d`) for one resource; unknown fields are a 400. */
export const parseFieldSelector = (
  selector: string | null | undefined,
  resource: Resource
): Matcher => {
  const terms = splitTopLevel(selector ?? '').map((term) => {
    const match = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(term)
    if (!match) throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`)
    const path = match[1]!.trim()
    if (
      path !== 'metadata.name' &&
      path !== 'metadata.namespace' &&
      !FIELDS[resource].includes(path)
    ) {
      throw badRequest(`field label not supported: ${path}`)
    }
    return { path, negate: match[2] === '!=', value: match[3]!.trim() }
  })
  return (object) =>
    terms.every(
      ({ path, negate, value }) => (fieldValue(object, resource, path) === value) !== negate
    )
}
