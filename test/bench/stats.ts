/** Percentiles and run aggregation for the benchmarks. */

export const percentile = (sorted: number[], p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

export interface LatencySummary {
  p50: number
  p90: number
  p99: number
  max: number
  count: number
}

export const summarize = (samples: number[]): LatencySummary => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
    count: sorted.length,
  }
}

/** Median of several runs' values, with the min–max range. */
export interface Spread {
  median: number
  min: number
  max: number
}

export const spread = (values: number[]): Spread => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted.at(-1)! }
}
