// Runs a Proxy in its own process, so tests can measure its memory or kill it. The config
// comes as JSON in PGWD_PROXY_CONFIG (already parsed), the roles in PGWD_PROXY_ROLES
// ("primary,standby,…"); prints "LISTENING <port>" when ready; exits on SIGTERM.
import { BackendRegistry } from '../../src/backends/registry.js';
import { silentLogger } from '../../src/log.js';
import { Proxy } from '../../src/proxy/index.js';
import type { Config } from '../../src/config/index.js';

const config = JSON.parse(process.env.PGWD_PROXY_CONFIG!) as Config;
const roles = process.env.PGWD_PROXY_ROLES!.split(',') as ('primary' | 'standby')[];
const registry = new BackendRegistry(config);
roles.forEach((role, id) => registry.update(id, { status: 'up', role }, 'test'));
const proxy = new Proxy({ config, registry, logger: silentLogger });
const a = await proxy.listen();
process.stdout.write(`LISTENING ${a.port}\n`);
process.on('SIGTERM', () => {
  void proxy.close().finally(() => process.exit(0));
});
