//! Many Raft groups hosted by the same three simulated processes: every group is a full
//! [`Sim`] with its own safety oracles (checked after each of its events), and the processes
//! are shared: one clock per process ticks all its groups at the same instants (so a tick's
//! heartbeats of every group to the same peer leave together and would share a group frame),
//! and faults happen to processes (a crash takes down all the groups of a process, a partition
//! cuts every group's links between the same processes). Events of all groups are processed
//! in global time order.
#![allow(dead_code)]

use super::{Faults, Sim};
use raftlet::{Config, NodeId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

pub struct MultiSim {
    pub groups: Vec<Sim>,
    /// Global time: the time of the last event processed.
    pub now: u64,
    /// `(next event time, group)`, possibly stale (checked against the group when popped).
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    /// Distinct `(from, to, time)` of sends since the last reset: the frames a runner that
    /// batches a tick's messages per peer process would send.
    frames: HashSet<(u64, u64, u64)>,
    /// Messages sent since the last reset.
    pub messages: u64,
    pub events: u64,
}

impl MultiSim {
    /// `n` groups of three replicas on processes 1, 2, 3, quiescing, under `faults` (network
    /// faults only: process faults come from the test).
    pub fn new(seed: u64, n: usize, faults: Faults, tweak: impl Fn(&mut Config<5>)) -> Self {
        let mut groups: Vec<Sim> = (0..n as u64)
            .map(|g| {
                let mut sim =
                    Sim::with_config(seed.wrapping_mul(1_000_003) + g, 3, faults.clone(), |c| {
                        c.quiesce = true;
                        tweak(c);
                    });
                sim.liveness = true;
                sim.send_log = Some(Vec::new());
                sim
            })
            .collect();
        // One clock per process: its groups tick together.
        let clocks: Vec<(u64, u64)> = groups[0]
            .slots
            .iter()
            .map(|s| (s.tick_period, s.next_tick))
            .collect();
        for g in &mut groups[1..] {
            for (s, &(period, next)) in g.slots.iter_mut().zip(&clocks) {
                s.tick_period = period;
                s.next_tick = next;
            }
        }
        let mut m = Self {
            groups,
            now: 0,
            queue: BinaryHeap::new(),
            frames: HashSet::new(),
            messages: 0,
            events: 0,
        };
        m.requeue_all();
        m
    }

    fn requeue_all(&mut self) {
        self.queue.clear();
        for (g, sim) in self.groups.iter().enumerate() {
            if let Some(t) = sim.next_at() {
                self.queue.push(Reverse((t, g)));
            }
        }
    }

    /// Processes the earliest event of any group.
    pub fn step(&mut self) -> bool {
        while let Some(Reverse((t, g))) = self.queue.pop() {
            if self.groups[g].next_at() != Some(t) {
                continue; // stale
            }
            self.now = self.now.max(t);
            let sim = &mut self.groups[g];
            sim.step();
            for (from, to, at) in sim.send_log.as_mut().unwrap().drain(..) {
                self.messages += 1;
                self.frames.insert((from.0, to.0, at));
            }
            if let Some(t) = sim.next_at() {
                self.queue.push(Reverse((t, g)));
            }
            self.events += 1;
            return true;
        }
        false
    }

    pub fn run(&mut self, events: u64) {
        for _ in 0..events {
            if !self.step() {
                break;
            }
        }
    }

    /// Runs until global time reaches `t`.
    pub fn run_to(&mut self, t: u64) {
        while self.queue.peek().is_some_and(|Reverse((at, _))| *at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    pub fn run_until(&mut self, max_events: u64, mut pred: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max_events {
            if pred(self) {
                return true;
            }
            if !self.step() {
                return pred(self);
            }
        }
        pred(self)
    }

    /// Brings every group's clock to global time before a process-level fault.
    fn sync_time(&mut self) {
        for g in &mut self.groups {
            g.now = g.now.max(self.now);
        }
    }

    /// Process `p` crashes: every group loses its replica there (and its unsynced writes).
    pub fn crash(&mut self, p: NodeId) {
        self.sync_time();
        for g in &mut self.groups {
            g.crash(p);
        }
        self.requeue_all();
    }

    /// Process `p` restarts and recovers every group's replica from its durable state; its
    /// groups tick together again.
    pub fn restart(&mut self, p: NodeId) {
        self.sync_time();
        for g in &mut self.groups {
            g.restart(p);
        }
        let i = p.0 as usize - 1;
        let next = self.groups[0].slots[i].next_tick;
        for g in &mut self.groups {
            g.slots[i].next_tick = next;
        }
        self.requeue_all();
    }

    /// Cuts the links between the processes in `side` and the others, for every group.
    pub fn partition(&mut self, side: &[NodeId]) {
        self.sync_time();
        for g in &mut self.groups {
            g.partition(side);
        }
    }

    pub fn heal(&mut self) {
        for g in &mut self.groups {
            g.heal();
        }
    }

    pub fn leader(&self, g: usize) -> Option<NodeId> {
        self.groups[g].leader()
    }

    /// Groups whose leader sits on process `p`.
    pub fn led_by(&self, p: NodeId) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&g| self.leader(g) == Some(p))
            .collect()
    }

    /// Every replica that is up is quiescent.
    pub fn all_quiescent(&self) -> bool {
        self.groups.iter().all(|s| {
            s.ids()
                .iter()
                .all(|&i| !s.is_up(i) || s.node(i).is_quiescent())
        })
    }

    /// Proposes the next payload of group `g` at its leader; returns the payload.
    pub fn propose(&mut self, g: usize) -> Option<u64> {
        let l = self.leader(g)?;
        self.groups[g].now = self.groups[g].now.max(self.now);
        self.groups[g].propose(l).ok()?;
        let p = self.groups[g].last_payload();
        if let Some(t) = self.groups[g].next_at() {
            self.queue.push(Reverse((t, g)));
        }
        Some(p)
    }

    /// Frames (distinct sender, receiver and instant) and messages since the last reset.
    pub fn traffic(&self) -> (u64, u64) {
        (self.frames.len() as u64, self.messages)
    }

    pub fn reset_traffic(&mut self) {
        self.frames.clear();
        self.messages = 0;
    }
}
