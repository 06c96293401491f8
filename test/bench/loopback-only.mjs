// Preloaded (`node --import`) into contenders that cannot be told where to listen
// (supergateway binds every interface): pins every listen() to 127.0.0.1 so
// benchmark servers are reachable from this machine only.
import net from 'node:net'

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const [port, ...rest] = args
    const callback = typeof rest.at(-1) === 'function' ? rest.at(-1) : undefined
    return listen.call(this, { port: Number(port), host: '127.0.0.1' }, callback)
  }
  if (args[0] && typeof args[0] === 'object' && 'port' in args[0]) {
    return listen.call(this, { ...args[0], host: '127.0.0.1' }, ...args.slice(1))
  }
  return listen.apply(this, args)
}
