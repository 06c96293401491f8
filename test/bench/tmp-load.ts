import { createAgent, McpHttpSession } from './mcp-http-client.ts'
const agent = createAgent(8)
const s = new McpHttpSession('http://127.0.0.1:18090/mcp', agent)
await s.open()
for (let i = 0; i < 8000; i++) await s.echo('hello')
await s.close()
agent.destroy()
