// pgbench load through a proxy for the online-restart tests: persistent connections (no -C),
// -N writes, in one protocol mode; resolves with pgbench's exit and its output.
import { pgBin, run, SUPERUSER, SUPERUSER_PASSWORD } from './pg.js';

export interface Bench {
  mode: string;
  done: Promise<{ code: number | null; out: string }>;
}

export function pgbench(p: { host: string; port: number }, mode: 'simple' | 'extended' | 'prepared', seconds: number): Bench {
  const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
  const args = ['-n', '-N', '-M', mode, '-c', '2', '-j', '1', '-T', String(seconds), '-h', p.host, '-p', String(p.port), '-U', SUPERUSER, 'postgres'];
  const done = run(pgBin('pgbench'), args, { asPostgres: false, env }).then(
    (out) => ({ code: 0, out }),
    (err: Error) => ({ code: 1, out: err.message }),
  );
  return { mode, done };
}

/** pgbench's count of transactions, or -1 when its output has none. */
export function processed(out: string): number {
  const m = /number of transactions actually processed: (\d+)/.exec(out);
  return m ? Number(m[1]) : -1;
}
