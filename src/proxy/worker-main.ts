// Entry point of a proxy worker process (node:cluster). The main process sends the config
// and a registry snapshot; the worker runs a Proxy on the shared listening socket, applies
// mirrored registry changes, reports stats, and exits when told to close.
import { BackendRegistry } from '../backends/registry.js';
import { createLogger } from '../log.js';
import { Proxy, fromWire, type IpcMsg } from './index.js';

let proxy: Proxy | undefined;

process.on('message', (m: IpcMsg) => {
  if (m.type === 'init') {
    void start(m).catch((err: Error) => {
      console.error(`proxy worker ${m.index}: ${err.message}`);
      process.exit(1);
    });
  } else if (m.type === 'close') {
    void (proxy?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  } else {
    proxy?.handleIpc(m);
  }
});

// The main process going away must not leave orphan workers serving clients.
process.on('disconnect', () => {
  void (proxy?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});

process.send?.({ type: 'ready' } satisfies IpcMsg);

async function start(m: Extract<IpcMsg, { type: 'init' }>): Promise<void> {
  const registry = new BackendRegistry(m.config);
  for (const { id, state } of m.registry) registry.update(id, fromWire(state), 'initial state from the main process');
  const logger = createLogger({ level: m.config.log.level, name: `pgwatchdog-worker-${m.index}`, pretty: false });
  proxy = new Proxy({ config: m.config, registry, logger, workerIndex: m.index });
  const a = await proxy.listen();
  process.send?.({ type: 'listening', host: a.host, port: a.port } satisfies IpcMsg);
  const timer = setInterval(() => process.send?.({ type: 'stats', stats: proxy!.stats() } satisfies IpcMsg), 1000);
  timer.unref();
}
