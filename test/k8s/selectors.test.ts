/**
 * @module test/k8s/selectors.test
 *
 * Label and field selectors match like the real API server's: `!=`/`notin` also match objects
 * without the label, set syntax and existence work, bad syntax and unknown fields are 400s.
 */
import { describe, expect, it } from 'vitest'
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'
import { StatusError } from './status.ts'
import type { KubeObject } from './types.ts'

const pod = (labels: Record<string, string>, extra: Record<string, unknown> = {}): KubeObject =>
  ({ metadata: { name: 'p', namespace: 'ns', labels }, ...extra }) as KubeObject

const matching = (selector: string, objects: KubeObject[]) => {
  const matcher = parseLabelSelector(selector)
  return objects.map((object) => matcher(object))
}

describe('label selectors', () => {
  const a = pod({ app: 'mcp', tier: 'web' })
  const b = pod({ app: 'other' })
  const c = pod({})

  it('matches equality with =, == and !=, where != also matches a missing label', () => {
    expect(matching('app=mcp', [a, b, c])).toEqual([true, false, false])
    expect(matching('app==mcp', [a, b, c])).toEqual([true, false, false])
    expect(matching('app!=mcp', [a, b, c])).toEqual([false, true, true])
  })

  it('matches set-based in / notin and existence', () => {
    expect(matching('app in (mcp, other)', [a, b, c])).toEqual([true, true, false])
    expect(matching('app notin (mcp)', [a, b, c])).toEqual([false, true, true])
    expect(matching('tier', [a, b, c])).toEqual([true, false, false])
    expect(matching('!tier', [a, b, c])).toEqual([false, true, true])
  })

  it('ANDs comma-separated requirements (commas inside parentheses belong to the set)', () => {
    expect(matching('app in (mcp,other),!tier', [a, b, c])).toEqual([false, true, false])
    expect(matching('', [a, b, c])).toEqual([true, true, true])
  })

  it('rejects malformed selectors with a 400', () => {
    for (const bad of ['app=(x', 'app in x', 'a b', 'app=bad value']) {
      expect(() => parseLabelSelector(bad), bad).toThrow(StatusError)
    }
  })
})

describe('field selectors', () => {
  it('matches metadata.name and status.phase, with != negating', () => {
    const running = pod({}, { status: { phase: 'Running' } })
    expect(parseFieldSelector('metadata.name=p', 'pods')(running)).toBe(true)
    expect(parseFieldSelector('metadata.name!=p', 'pods')(running)).toBe(false)
    expect(parseFieldSelector('status.phase=Running,metadata.namespace=ns', 'pods')(running)).toBe(
      true
    )
  })

  it('knows the computed job field status.successful and event fields', () => {
    const job = { metadata: { name: 'j' }, status: { succeeded: 1 } } as KubeObject
    expect(parseFieldSelector('status.successful=1', 'jobs')(job)).toBe(true)
    const event = { metadata: { name: 'e' }, involvedObject: { name: 'p' } } as KubeObject
    expect(parseFieldSelector('involvedObject.name=p', 'events')(event)).toBe(true)
  })

  it('answers 400 "field label not supported" for unknown fields', () => {
    try {
      parseFieldSelector('spec.containers=x', 'pods')
      expect.unreachable()
    } catch (error) {
      expect((error as StatusError).code).toBe(400)
      expect((error as StatusError).message).toBe('field label not supported: spec.containers')
    }
  })
})
