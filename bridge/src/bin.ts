#!/usr/bin/env node
/**
 * @module
 * Process entry of the `ferry` command.
 */
import { main } from './cli.ts'

await main(process.argv.slice(2))
