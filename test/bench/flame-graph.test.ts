import { describe, expect, it } from 'vitest'
import { type CpuProfile, renderFlameGraph } from './flame-graph.ts'

const frame = (functionName: string, url = '') => ({ functionName, url })

/** Samples 100 µs apart from t = 1000 µs: at 1100 (handle), 1200 and 1300 (writev), 1400 (idle), 1500 (parse), 1600 (handle). */
const PROFILE: CpuProfile = {
  startTime: 1000,
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 4] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('handle', 'file:///srv/ferry/bridge/dist/app.js'), children: [5] },
    { id: 4, callFrame: frame('parse<T>', 'node:internal/http') },
    { id: 5, callFrame: frame('writev') },
  ],
  samples: [3, 5, 5, 2, 4, 3],
  timeDeltas: [100, 100, 100, 100, 100, 100],
}

describe('renderFlameGraph', () => {
  const { svg, busyUs } = renderFlameGraph(PROFILE, {
    title: 'a <bridge>',
    calls: 2,
    window: { startUs: 1150, endUs: 1550 },
  })

  it('counts only the busy samples inside the window', () => {
    expect(busyUs).toBe(300)
    expect(svg).toContain('busy 150.0 µs per call, over 2 calls')
  })

  it('gives each frame its time with its callees, per call and as a share', () => {
    expect(svg).toContain('<title>handle dist/app.js: 100.0 µs per call (66.7%)</title>')
    expect(svg).toContain('<title>writev: 100.0 µs per call (66.7%)</title>')
    expect(svg).toContain(
      '<title>parse&lt;T&gt; node:internal/http: 50.0 µs per call (33.3%)</title>'
    )
    expect(svg).not.toContain('(idle)')
  })

  it('draws callees below their callers, widths in proportion', () => {
    const rect = (title: string) => {
      const match = new RegExp(
        `<title>${title}[^<]*</title><rect x="([\\d.]+)" y="(\\d+)" width="([\\d.]+)"`
      ).exec(svg)
      return match && { x: Number(match[1]), y: Number(match[2]), width: Number(match[3]) }
    }
    const handle = rect('handle')!
    const writev = rect('writev')!
    const parse = rect('parse')!
    expect(writev.y).toBeGreaterThan(handle.y)
    expect(writev.x).toBe(handle.x)
    expect(handle.width).toBeCloseTo(800, 0)
    expect(parse.width).toBeCloseTo(400, 0)
    expect(parse.x).toBeCloseTo(800, 0)
  })

  it('colours Ferry, Node.js and engine frames apart, and escapes text', () => {
    expect(svg).toMatch(/<title>handle[^<]*<\/title><rect [^>]*fill="#e45756"/)
    expect(svg).toMatch(/<title>parse[^<]*<\/title><rect [^>]*fill="#72b7b2"/)
    expect(svg).toMatch(/<title>writev[^<]*<\/title><rect [^>]*fill="#bab0ac"/)
    expect(svg).toContain('a &lt;bridge&gt;')
    expect(svg).not.toContain('<bridge>')
  })
})
