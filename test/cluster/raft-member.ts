// One Raft member as its own process, for test/cluster/raft-runtime.test.ts (raft-members.ts
// starts it): a RaftRuntime over a real WebSocket transport and a DiskStorage, applying numbers.
// argv[2] is its setup (JSON). It logs pino JSON lines on stdout, takes one request per stdin
// line ({id, op, ...}) and answers each on stdout ({reply: id, value} or {reply: id, error,
// leader}). An uncaught error ends it as a crash would: exit code 1, the stack on stderr.
import { createInterface } from 'node:readline';
import pino from 'pino';
import { DiskStorage } from '../../src/raft/index.js';
import { ProposalError, RaftRuntime, type StateMachine } from '../../src/cluster/raft-runtime.js';
import { WsTransport, type PeerAddress } from '../../src/cluster/transport.js';

export interface MemberSetup {
  name: string;
  peers: PeerAddress[];
  dir: string;
  priorities: Record<string, number>;
  compactEvery: number;
}

export type Request =
  | { id: number; op: 'propose'; value: number }
  | { id: number; op: 'status' | 'values' | 'halt' | 'crash' }
  | { id: number; op: 'handOver'; timeoutMs: number };

class Numbers implements StateMachine<number, number[]> {
  values: number[] = [];
  apply(cmd: number) {
    this.values.push(cmd);
  }
  snapshot() {
    return [...this.values];
  }
  restore(s: number[]) {
    this.values = [...s];
  }
}

const setup = JSON.parse(process.argv[2]!) as MemberSetup;
const logger = pino({ level: 'debug', base: { member: setup.name } }, process.stdout);
const reply = (id: number, body: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ reply: id, ...body })}\n`);

// Generous timing (election timeout 1-2 s): the machine running the tests is shared and
// loaded; a stall longer than the election timeout is a real loss of quorum to Raft.
const transport = new WsTransport({ self: setup.name, peers: setup.peers, authKey: 'sekrit', logger, pingIntervalMs: 250, backoff: { minMs: 50, maxMs: 300 } });
await transport.start();
const sm = new Numbers();
const rt = new RaftRuntime<number, number[]>({
  self: setup.name,
  peers: setup.peers.map((p) => ({ name: p.name, priority: setup.priorities[p.name] ?? 0 })),
  tickMs: 50,
  electionTicks: 20,
  heartbeatTicks: 1,
  openStorage: () => new DiskStorage<number, number[]>(setup.dir),
  transport,
  machine: sm,
  logger,
  compactEvery: setup.compactEvery,
});
rt.start();
logger.info('member ready');

async function handle(r: Request): Promise<void> {
  switch (r.op) {
    case 'propose':
      return rt.propose(r.value).then(
        (at) => reply(r.id, { value: at }),
        (err: Error) => reply(r.id, { error: err.message, leader: err instanceof ProposalError ? err.leader : null }),
      );
    case 'status':
      return reply(r.id, { value: rt.status() });
    case 'values':
      return reply(r.id, { value: sm.values });
    case 'handOver':
      return reply(r.id, { value: await rt.handOver(r.timeoutMs) });
    case 'halt':
      rt.stop();
      await transport.close();
      reply(r.id, { value: true }); // stdout is a pipe: written synchronously on Linux
      return process.exit(0);
    case 'crash':
      // What a bug in the runtime's loop would do: throw from a timer, uncaught.
      reply(r.id, { value: true });
      setTimeout(() => {
        throw new Error(`deliberate crash of member ${setup.name}`);
      }, 10);
  }
}

// The parent's end of stdin closing (it died) ends the member too.
createInterface({ input: process.stdin }).on('line', (line) => void handle(JSON.parse(line) as Request)).on('close', () => {
  rt.stop();
  void transport.close().finally(() => process.exit(0));
});
