// Entry point of a proxy worker process (node:cluster, forked by WorkerSupervisor in
// workers.ts): runs a Proxy as one of the workers.
import { Proxy } from './index.js';
import { serveAsWorker } from './workers.js';

serveAsWorker((opts, worker) => new Proxy({ ...opts, worker }));
