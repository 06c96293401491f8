#!/usr/bin/env node
/**
 * @module
 * Process entry of the bundled sidecar (`dist/sidecar.mjs`).
 */
import { main } from './cli.ts'

await main(process.argv.slice(2))
