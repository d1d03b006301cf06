// The Raft runtime does not wake on every tick: it sleeps until the core's next deadline and
// makes the ticks up when it wakes, when a message arrives or when its status is read.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { MemoryStorage } from '../../src/raft/index.js';
import { RaftRuntime, type StateMachine } from '../../src/cluster/raft-runtime.js';
import type { PeerTransport, TransportEvents } from '../../src/cluster/transport.js';
import type { Envelope } from '../../src/cluster/wire.js';
import { captureLogger } from './helpers.js';

/** A transport to peers that never answer: what this peer sends is only counted. */
class SilentPeers extends EventEmitter<TransportEvents> implements PeerTransport {
  readonly sent: Envelope[] = [];
  constructor(readonly self: string) {
    super();
  }
  send(_to: string, env: Envelope): boolean {
    this.sent.push(env);
    return true;
  }
  connected(): string[] {
    return [];
  }
  async close(): Promise<void> {}
}

const machine: StateMachine<number, null> = { apply: () => undefined, snapshot: () => null, restore: () => undefined };

describe('raft runtime at idle', () => {
  it('sleeps until the next deadline, makes the missed ticks up in one go, and reads the present', async () => {
    const transport = new SilentPeers('a');
    const rt = new RaftRuntime<number, null>({
      self: 'a',
      peers: ['a', 'b', 'c'].map((name) => ({ name, priority: 0 })),
      tickMs: 10,
      electionTicks: 30,
      heartbeatTicks: 3,
      openStorage: () => new MemoryStorage<number, null>(),
      transport,
      machine,
      logger: captureLogger().logger,
      random: () => 0.5, // election timeout 45 ticks
    });
    rt.start(); // (start() builds the member from storage: watch that one)
    // When each tick() happened: with a timer per tick they would come one per 10 ms.
    const tickedAt: number[] = [];
    const tick = rt.node.tick.bind(rt.node);
    rt.node.tick = () => {
      tickedAt.push(performance.now());
      tick();
    };
    try {
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(transport.sent.length, 0, 'a follower sends nothing before its election timeout');
      assert.ok(tickedAt.length < 5, `asleep until its deadline: ticked ${tickedAt.length} times in 250 ms`);
      // Reading the status runs the ticks due: it is about now, not the last wake-up.
      const st = rt.status();
      assert.ok(st.tick >= 20, `status at tick ${st.tick} after 250 ms of 10 ms ticks`);
      const burst = tickedAt.filter((t) => t >= tickedAt[tickedAt.length - 1]! - 1).length;
      assert.ok(burst >= 20, `the missed ticks are made up at once (${burst} within 1 ms)`);
      // The deadline itself is kept: the election timeout (45 ticks) starts a pre-vote.
      const t0 = performance.now();
      while (!transport.sent.some((e) => e.kind === 'raft' && e.body.type === 'preVote') && performance.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 5));
      assert.ok(transport.sent.some((e) => e.kind === 'raft' && e.body.type === 'preVote'), 'a pre-vote once the election timeout passed');
      assert.ok(rt.status().tick >= 45, 'not before the election timeout');
    } finally {
      rt.stop();
    }
  });
});
