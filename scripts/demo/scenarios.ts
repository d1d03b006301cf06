// The demo's two scenarios, each told as it happens (narrate.ts over the peers' logs, plus
// what the demo's own clients and the admin API see) and each ending with a verdict:
//   failover     kill -9 of the primary's postmaster → consensus, the coordinator's promotion
//                (the one failover command of the whole cluster), every peer routing writes to
//                the new primary, a committed write through each peer;
//   coordinator  kill -9 of the coordinator peer → election, the new coordinator's claim and
//                VIP escalation (simulated), writes through the survivors; then the killed
//                peer restarts with its Raft data and joins as STANDBY.
import type { StatusView } from '../../src/admin/views.js';
import type { LogLine, PeerProcess } from '../../test/support/peer.js';
import { NAMES, type Name } from '../../test/support/watchdog-bed.js';
import { sleep, until, type DemoCluster, type Say } from './cluster.js';
import { fmt, Narrator, type Rule } from './narrate.js';

export interface Verdict {
  ok: boolean;
  reason: string;
}

const firstStatus = async (dc: DemoCluster): Promise<StatusView> => (await until(10_000, () => dc.status(NAMES[0])))!;

/** Writes through `p` until one commits on a server other than `oldPort`; ms since t0, or null. */
async function firstWrite(dc: DemoCluster, p: PeerProcess, oldPort: number | null, t0: number, timeoutMs: number): Promise<{ ms: number; port: number } | null> {
  const r = await until(
    timeoutMs,
    async () => {
      const port = await dc.write(p);
      return port !== oldPort ? { ms: Date.now() - t0, port } : undefined;
    },
    20,
  );
  return r ?? null;
}

function timings(n: Narrator, rows: [string, string | string[]][]): string[] {
  const out = ['Timings (from the kill):'];
  for (const [label, key] of rows) {
    const keys = Array.isArray(key) ? key : [key];
    const ms = keys.map((k) => n.firsts.get(k));
    const known = ms.filter((x): x is number => x !== undefined);
    const v = known.length === keys.length ? fmt(Math.max(...known)) : 'not seen';
    out.push(`  ${label.padEnd(58)} ${v}`);
  }
  return out;
}

export async function failoverScenario(dc: DemoCluster, say: Say): Promise<Verdict> {
  const b = dc.bed;
  const before = await firstStatus(dc);
  const oldId = before.primary;
  if (oldId === null) return { ok: false, reason: 'no primary before the scenario' };
  const node = b.cluster.nodes[oldId]!;
  const coordinator = before.coordinator;
  await b.cluster.waitReplicated();
  const commandsBefore = b.failoverCount();
  const isOld = (l: LogLine) => l.backend === oldId;
  const rules: Rule[] = [
    { once: 'peer', key: 'detect', say: (_, l) => (l.msg === 'backend unreachable after all health-check retries' && isOld(l) ? `health checks: backend ${oldId} unreachable after ${String(l.attempts)} attempts (${String(l.error)})` : undefined) },
    { once: 'peer', say: (_, l) => (String(l.msg).startsWith('local quarantine:') && isOld(l) ? `quarantines backend ${oldId} locally: only its own checks see it down so far (no command runs)` : undefined) },
    { once: 'cluster', key: 'consensus', say: (_, l) => (String(l.msg).startsWith('coordinator: request-down:') ? `coordinator: consensus — ${String(l.msg).slice('coordinator: request-down: '.length)}; hands it to its failover engine` : undefined) },
    { once: 'cluster', key: 'started', say: (_, l) => (/^cluster state: failover \d+ .* started by/.test(String(l.msg)) ? `Raft: committed "${String(l.msg).slice('cluster state: '.length)}" (entry ${String(l.index)}) before any command runs` : undefined) },
    { once: 'peer', say: (_, l) => (String(l.msg).startsWith('interlock: holding') ? `interlock: holds new sessions to backend ${oldId} while the coordinator runs the failover` : undefined) },
    { once: 'cluster', say: (_, l) => (String(l.msg).startsWith('promotion candidate:') ? `coordinator: ${String(l.msg)}` : undefined) },
    { once: 'cluster', key: 'promoted', say: (_, l) => (l.msg === 'failover step promote done' ? `coordinator: ${String(l.detail)} (${String(l.ms)} ms)` : undefined) },
    {
      once: 'peer',
      say: (_, l) => (l.msg === 'backend state changed' && l.role === 'primary' && l.status === 'up' && l.backend !== oldId ? `routes writes to backend ${String(l.backend)} now (${String(l.reason).replace(/:.*/, '')})` : undefined),
    },
    { once: 'cluster', say: (_, l) => (l.msg === 'failover step follow done' ? `coordinator: ${String(l.detail).replace(/password=\S+/, 'password=…').replace(/ application_name=.*/, '')}` : undefined) },
    { say: (_, l) => (l.msg === 'failover_command succeeded' ? `failover_command ran here (the only peer that runs it): ${String(l.command)}` : undefined) },
    { once: 'cluster', key: 'finished', say: (_, l) => (/^cluster state: failover \d+ finished/.test(String(l.msg)) ? `Raft: committed "${String(l.msg).slice('cluster state: '.length)}"; the interlock lets go` : undefined) },
  ];
  // Each peer's switch of routing, for the timings only (an empty sentence is not printed).
  for (const name of NAMES) rules.push({ once: 'peer', key: `route-${name}`, say: (n, l) => (n === name && l.msg === 'backend state changed' && l.role === 'primary' && l.status === 'up' && l.backend !== oldId ? '' : undefined) });

  const pid = node.pid();
  say(`scenario failover: kill -9 of the primary's postmaster (backend ${oldId}, pid ${pid}, 127.0.0.1:${node.port}); coordinator ${coordinator}`);
  say('what the cluster does, from the peers\' logs (time since the kill):');
  const t0 = Date.now();
  const n = new Narrator(b, t0, rules, (s) => process.stdout.write(`${s}\n`));
  n.start();
  await node.kill9();
  n.note(Date.now() - t0, `demo   kill -9 ${pid} (postmaster of backend ${oldId}) done`);
  const writes = await Promise.all(
    NAMES.map(async (name) => {
      const w = await firstWrite(dc, b.peers.get(name)!, node.port, t0, 30_000);
      if (w) n.note(w.ms, `${name.padEnd(5)}  first committed write through this peer (client: INSERT … RETURNING inet_server_port() → ${w.port})`, `write-${name}`);
      return { name, w };
    }),
  );
  await until(10_000, async () => n.firsts.get('finished'));
  await sleep(1000);
  n.stop();

  const after = await dc.statuses();
  const newIds = new Set([...after.values()].map((v) => (v instanceof Error ? `error: ${v.message}` : String(v.primary))));
  const commands = b.failoverCount() - commandsBefore;
  const lines = [
    '',
    ...timings(n, [
      ['first peer\'s health checks declare the primary down', 'detect'],
      ['consensus: the coordinator requests the failover', 'consensus'],
      ['FailoverStarted committed: the interlock holds', 'started'],
      ['coordinator promoted the most advanced standby', 'promoted'],
      ['every peer routes writes to the new primary', NAMES.map((x) => `route-${x}`)],
      ...NAMES.map((x): [string, string] => [`first committed write through ${x}`, `write-${x}`]),
      ['FailoverFinished committed', 'finished'],
    ]),
    `failover commands run in the whole cluster for this kill: ${commands} (counted in ${b.dir}/failovers)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const failedWrites = writes.filter((x) => x.w === null).map((x) => x.name);
  if (failedWrites.length) return { ok: false, reason: `no committed write on a new primary through ${failedWrites.join(', ')} within 30 s` };
  if (newIds.size !== 1) return { ok: false, reason: `the peers do not agree on the new primary: ${[...after].map(([k, v]) => `${k}: ${v instanceof Error ? v.message : v.primary}`).join(', ')}` };
  const newId = [...newIds][0]!;
  if (newId === String(oldId) || newId === 'null') return { ok: false, reason: `the peers route to ${newId === 'null' ? 'no primary' : `the old primary ${oldId}`}` };
  if (commands !== 1) return { ok: false, reason: `failover_command ran ${commands} times in the cluster (must be exactly once)` };
  return { ok: true, reason: `backend ${newId} is the primary on every peer; failover_command ran once in the whole cluster; writes commit through all three peers` };
}

export async function coordinatorScenario(dc: DemoCluster, say: Say): Promise<Verdict> {
  const b = dc.bed;
  const before = await firstStatus(dc);
  const old = before.coordinator as Name | null;
  if (old === null) return { ok: false, reason: 'no coordinator before the scenario' };
  const survivors = NAMES.filter((x) => x !== old);
  const rules: Rule[] = [
    { once: 'peer', key: 'link-down', say: (n, l) => (l.msg === 'watchdog link down' && l.peer === old && n !== old ? `link to ${old} down` : undefined) },
    { once: 'peer', say: (n, l) => (l.msg === 'watchdog link silent: dropping it' && l.peer === old ? `link to ${old} silent for ${String(l.silentMs)} ms: dropped` : undefined) },
    { key: 'election', say: (n, l) => (l.msg === 'raft role changed' && l.role === 'candidate' ? `Raft: election timeout, no word from ${old}: stands for term ${String(l.term)}` : undefined) },
    { key: 'leader', say: (n, l) => (l.msg === 'raft role changed' && l.role === 'leader' ? `Raft: elected leader of term ${String(l.term)}` : undefined) },
    { say: (n, l) => (l.msg === 'raft role changed' && l.role === 'follower' && typeof l.leader === 'string' ? `Raft: follows ${l.leader} in term ${String(l.term)}` : undefined) },
    { once: 'cluster', key: 'claimed', say: (n, l) => (l.msg === 'coordinator claimed for the term' ? `coordinator: claim for term ${String(l.term)} committed: it is the coordinator` : undefined) },
    { key: 'vip', say: (n, l) => (l.msg === 'VIP escalation succeeded' ? `VIP: escalation command succeeded (simulated: ${String(l.command)})` : undefined) },
    { say: (n, l) => (String(l.msg).startsWith('local quarantine:') ? `local quarantine of backend ${String(l.backend)}: ${String(l.msg).slice('local quarantine: '.length)}` : undefined) },
    { key: 'rejoin-drop', say: (n, l) => (n === old && String(l.msg).startsWith('de-escalation at start') ? 'starting: runs the de-escalation first, in case it still held the VIP' : undefined) },
    { say: (n, l) => (n !== old && l.msg === 'watchdog link up' && l.peer === old ? `link to ${old} up again (authenticated)` : undefined) },
    { key: 'rejoin-ready', say: (n, l) => (n === old && l.msg === 'peer ready' ? 'peer ready (proxy accepting)' : undefined) },
  ];
  say(`scenario coordinator: kill -9 of the coordinator peer ${old} (pid ${b.peers.get(old)!.proc.pid}); VIP marker on ${b.holders().join(', ') || 'none'}`);
  say('what the cluster does, from the peers\' logs and admin APIs (time since the kill):');
  const t0 = Date.now();
  const n = new Narrator(b, t0, rules, (s) => process.stdout.write(`${s}\n`));
  n.start();
  // The admin API as an operator would watch it: each survivor's coordinator and view of the dead peer.
  const seen = new Map<Name, string>();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      for (const name of NAMES) {
        const p = b.peers.get(name);
        if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) continue;
        const st = await dc.status(name).catch(() => undefined);
        if (!st) continue;
        const view = `coordinator ${st.coordinator ?? 'none'}; ${old} ${st.peers.find((x) => x.name === old)?.state ?? '?'}; VIP holder ${st.vip.holder ?? 'none'}`;
        if (seen.get(name) !== view) {
          seen.set(name, view);
          n.note(Date.now() - t0, `${name.padEnd(5)}  admin API: ${view}`, st.coordinator && st.coordinator !== old ? `api-${name}` : undefined);
        }
      }
      await sleep(100);
    }
  })();
  await b.peers.get(old)!.kill9();
  n.note(Date.now() - t0, `demo   kill -9 of ${old} done`);

  const newCoord = await until(20_000, async () => {
    const st = await Promise.all(survivors.map((x) => dc.status(x)));
    const c = st[0]!.coordinator;
    return c !== null && c !== old && st.every((s) => s.coordinator === c) ? (c as Name) : undefined;
  });
  let verdict: Verdict | undefined;
  if (!newCoord) verdict = { ok: false, reason: `the survivors did not agree on a new coordinator within 20 s` };
  const holder = newCoord ? await until(10_000, async () => (b.holders().length === 1 && b.holders()[0] === newCoord ? newCoord : undefined)) : undefined;
  if (!verdict && !holder) verdict = { ok: false, reason: `the VIP marker is on ${b.holders().join(', ') || 'no peer'}, not on the new coordinator ${newCoord}` };
  for (const name of survivors) {
    const w = await firstWrite(dc, b.peers.get(name)!, null, t0, 15_000);
    if (w) n.note(w.ms, `${name.padEnd(5)}  committed write through this peer (on :${w.port})`, `write-${name}`);
    else verdict ??= { ok: false, reason: `no write committed through ${name} within 15 s` };
  }

  await sleep(500);
  const tr = Date.now();
  n.note(tr - t0, `demo   restarting ${old} with the same config and Raft data_dir`);
  await b.start(old);
  const joined = await until(30_000, async () => {
    const st = await Promise.all(NAMES.map((x) => dc.status(x)));
    const mine = st[NAMES.indexOf(old)]!;
    return mine.peer.state === 'standby' && mine.coordinator === newCoord && st.every((s) => s.peers.find((x) => x.name === old)?.state === 'standby') ? Date.now() - t0 : undefined;
  });
  if (joined !== undefined) n.note(joined, `${old.padEnd(5)}  every peer's admin API shows ${old} as STANDBY, ${newCoord} still coordinator`, 'standby');
  else verdict ??= { ok: false, reason: `${old} did not show as STANDBY on every peer within 30 s of its restart` };
  if (joined !== undefined && (b.holders().length !== 1 || b.holders()[0] !== newCoord)) verdict ??= { ok: false, reason: `after the rejoin the VIP marker is on ${b.holders().join(', ') || 'no peer'}` };
  const w = await firstWrite(dc, b.peers.get(old)!, null, t0, 15_000);
  if (w) n.note(w.ms, `${old.padEnd(5)}  committed write through the rejoined peer (on :${w.port})`);
  else verdict ??= { ok: false, reason: `no write committed through the rejoined ${old}` };
  watching = false;
  await watch;
  n.stop();
  const ready = n.firsts.get('rejoin-ready');

  process.stdout.write(
    `${[
      '',
      ...timings(n, [
        ['a survivor stands for election', 'election'],
        ['new Raft leader elected', 'leader'],
        ['its coordinator claim committed', 'claimed'],
        ['VIP escalation on the new coordinator', 'vip'],
        ['both survivors\' admin APIs name the new coordinator', survivors.map((x) => `api-${x}`)],
        ...survivors.map((x): [string, string] => [`first committed write through ${x}`, `write-${x}`]),
      ]),
      `  ${`${old} restarted: process start → peer ready`.padEnd(58)} ${ready !== undefined ? fmt(ready - (tr - t0)) : 'not seen'}`,
      `  ${`${old} peer ready → STANDBY on every peer`.padEnd(58)} ${ready !== undefined && joined !== undefined ? fmt(joined - ready) : 'not seen'}`,
    ].join('\n')}\n`,
  );
  return verdict ?? { ok: true, reason: `${newCoord} took over as coordinator and holds the VIP alone; ${old} rejoined as STANDBY; writes commit through all three peers` };
}
