//! Crash chaos: SIGKILL of the engine at a seeded random moment during a scripted activity (streamed text, tool
//! calls, an approval, queued input), then a restart, a resubscription and whatever decisions recovery asks for.
//! Every trial checks that the log is gapless with no duplicate, that every event a client saw before the kill is
//! unchanged after it, that the database passes `PRAGMA integrity_check`, that no model attempt was sent without its
//! own `turn.dispatched` (so none was sent twice unless a retry decision recorded one more), and that the session
//! ends in a decided state where a new prompt completes.
//!
//! `cargo test --test chaos` runs a few trials; `scripts/chaos [TRIALS] [SEED]` runs any number and prints the
//! figures (`KEEL_CHAOS_TRIALS`, `KEEL_CHAOS_SEED`, `KEEL_CHAOS_PARALLEL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::mock::{MockModel, Wire};
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so that a seed reproduces a trial's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What went wrong in a trial, by kind; the summary counts these.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    detail: String,
}

fn fail(kind: &'static str, detail: impl Into<String>) -> Failure {
    Failure { kind, detail: detail.into() }
}

fn call(id: &str, name: &str, input: Value) -> ScriptToolCall {
    ScriptToolCall { id: Some(id.into()), name: name.into(), input }
}

fn script(rng: &mut Rng) -> Vec<ScriptTurn> {
    let delay = 2 + rng.below(8);
    vec![
        ScriptTurn {
            text: Some("planning the work ".repeat(20)),
            chunk_delay_ms: delay,
            tool_calls: vec![
                call("c1", "bash", json!({ "command": "sleep 0.2; echo ran" })),
                call("c2", "todowrite", json!({ "todos": [{ "content": "chaos", "status": "in_progress" }] })),
            ],
            ..Default::default()
        },
        ScriptTurn {
            tool_calls: vec![call("c3", "write", json!({ "filePath": "out.txt", "content": "chaos" }))],
            ..Default::default()
        },
        ScriptTurn { text: Some("first prompt done ".repeat(10)), chunk_delay_ms: delay, ..Default::default() },
        ScriptTurn { text: Some("second prompt done ".repeat(30)), chunk_delay_ms: delay, ..Default::default() },
    ]
}

/// Answers approvals, makes recovery decisions and records events until `done` says the trial may go on.
struct Driver<'a> {
    client: &'a Client,
    subscription: String,
    session: &'a str,
    events: BTreeMap<u64, Value>,
    rng: &'a mut Rng,
}

impl Driver<'_> {
    /// Handles one message; false when the connection produced nothing within `wait`.
    async fn step(&mut self, wait: Duration) -> bool {
        let Some(m) = self.client.maybe_message(wait).await else { return false };
        if m["method"] == "approval/request" {
            self.client.respond(&m["id"], json!({ "decision": "once" }));
        } else if m["method"] == "session/event" && m["params"]["subscriptionId"] == self.subscription.as_str() {
            let event = m["params"]["event"].clone();
            if event["type"] == "recovery.required" {
                let decision = if self.rng.below(2) == 0 { "retry" } else { "abandon" };
                let params = json!({ "sessionId": self.session, "decision": decision });
                // Another decision may have been taken already (a resubscription replays the request).
                let _ = self.client.call("recovery/decide", params).await;
            }
            self.events.insert(event["seq"].as_u64().unwrap(), event);
        }
        true
    }

    /// Steps until the session is idle with nothing pending, or `within` passes.
    async fn settle(&mut self, within: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if tokio::time::Instant::now() > deadline {
                let got = self.client.ok("session/get", json!({ "sessionId": self.session })).await;
                return Err(fail("undecided", format!("status {} after {within:?}", got["status"])));
            }
            if self.step(Duration::from_millis(100)).await {
                continue;
            }
            let got = self.client.ok("session/get", json!({ "sessionId": self.session })).await;
            // Quiet in the database, and every event up to its head delivered to this client.
            let delivered = self.events.keys().last().copied().unwrap_or(0) >= got["headSeq"].as_u64().unwrap_or(0);
            let quiet = delivered
                && ["idle", "failed"].contains(&got["status"].as_str().unwrap_or_default())
                && got["pendingInputs"].as_array().is_some_and(|p| p.is_empty())
                && got["pendingApprovals"].as_array().is_some_and(|p| p.is_empty());
            if quiet {
                return Ok(());
            }
        }
    }
}

struct Outcome {
    killed_at_seq: u64,
    decisions: usize,
}

async fn trial(seed: u64) -> Result<Outcome, Failure> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let wire = Wire::ALL[rng.below(3) as usize];
    let home = Home::new();
    let mock = MockModel::start().await;
    for turn in script(&mut rng) {
        mock.push(turn);
    }
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": wire.config_name(), "baseUrl": mock.url() } },
        "permissions": [{ "action": "bash", "effect": "allow" }, { "action": "edit", "effect": "ask" }],
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let env = [("KEEL_RETRY_BASE_MS", "20")];

    let a = SocketEngine::start_at(home.path(), "a.sock", &env).await;
    let client = a.connect_with(json!({ "approvals": true })).await;
    let session = client.create_session(&home.workspace()).await;
    let subscription = client.subscribe(&session, 0).await;
    for text in ["first", "second"] {
        client.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] })).await;
    }
    let kill_after = Duration::from_millis(rng.below(1500));
    let mut driver =
        Driver { client: &client, subscription, session: &session, events: BTreeMap::new(), rng: &mut rng };
    let deadline = tokio::time::Instant::now() + kill_after;
    while tokio::time::Instant::now() < deadline {
        driver.step(deadline - tokio::time::Instant::now()).await;
    }
    let seen = std::mem::take(&mut driver.events);
    let mut child = a.child;
    child.kill().await.unwrap();

    let b = SocketEngine::start_at(home.path(), "b.sock", &env).await;
    let client = b.connect_with(json!({ "approvals": true })).await;
    let subscription = client.subscribe(&session, 0).await;
    let mut driver =
        Driver { client: &client, subscription, session: &session, events: BTreeMap::new(), rng: &mut rng };
    driver.settle(Duration::from_secs(30)).await?;
    let before_final = driver.events.keys().last().copied().unwrap_or(0);
    client.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "final" }] })).await;
    driver.settle(Duration::from_secs(30)).await?;
    let closed_after = driver.events.range(before_final + 1..).filter(|(_, e)| e["type"] == "activity.closed").count();
    let last_close = driver.events.values().rfind(|e| e["type"] == "activity.closed");
    if closed_after == 0 || last_close.is_none_or(|e| e["data"]["reason"] != "completed") {
        return Err(fail("final_prompt", format!("the prompt after recovery ended with {last_close:?}")));
    }

    let log: Vec<Value> = {
        let got = client.ok("session/events", json!({ "sessionId": session, "afterSeq": 0, "limit": 100000 })).await;
        got["events"].as_array().unwrap().clone()
    };
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
        return Err(fail("gap_or_duplicate", format!("{seqs:?}")));
    }
    for (seq, event) in &seen {
        if log.get(*seq as usize - 1) != Some(event) {
            return Err(fail(
                "changed_after_restart",
                format!("seq {seq}: {event} became {:?}", log.get(*seq as usize - 1)),
            ));
        }
    }
    let dispatched = log.iter().filter(|e| e["type"] == "turn.dispatched").count();
    let requests = mock.requests().len();
    if requests > dispatched {
        return Err(fail("sent_without_dispatch", format!("{requests} requests for {dispatched} dispatched attempts")));
    }
    // After `recovery.required`, nothing is dispatched again before the decision to retry.
    let mut waiting = false;
    for event in &log {
        match event["type"].as_str().unwrap_or_default() {
            "recovery.required" => waiting = true,
            "recovery.resolved" => waiting = false,
            "turn.dispatched" if waiting => return Err(fail("sent_twice", format!("{event}"))),
            _ => {}
        }
    }
    if common::store_for(home.path()).is_none() {
        let db = rusqlite::Connection::open(home.path().join("keel.db")).unwrap();
        let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        if integrity != "ok" {
            return Err(fail("integrity", integrity));
        }
    }
    let decisions = log.iter().filter(|e| e["type"] == "recovery.resolved").count();
    Ok(Outcome { killed_at_seq: seen.keys().last().copied().unwrap_or(0), decisions })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sigkills_leave_a_consistent_recoverable_session() {
    let trials = env_number("KEEL_CHAOS_TRIALS", 4);
    let seed = env_number("KEEL_CHAOS_SEED", 20261128);
    let parallel = env_number("KEEL_CHAOS_PARALLEL", 2).max(1) as usize;
    let started = std::time::Instant::now();
    let mut failures: BTreeMap<&'static str, Vec<(u64, String)>> = BTreeMap::new();
    let (mut decided, mut mid_run) = (0, 0);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < trials || !pending.is_empty() {
        while next < trials && pending.len() < parallel {
            let trial_seed = seed + next;
            pending.spawn(async move {
                let outcome = tokio::time::timeout(Duration::from_secs(120), trial(trial_seed)).await;
                (trial_seed, outcome.unwrap_or_else(|_| Err(fail("timeout", "the trial took over 120 s"))))
            });
            next += 1;
        }
        let (trial_seed, outcome) = pending.join_next().await.unwrap().unwrap();
        match outcome {
            Ok(o) => {
                decided += o.decisions;
                mid_run += usize::from(o.killed_at_seq > 0);
            }
            Err(f) => failures.entry(f.kind).or_default().push((trial_seed, f.detail)),
        }
    }
    let failed: usize = failures.values().map(Vec::len).sum();
    println!(
        "chaos: {trials} trials from seed {seed}, {failed} failed, {mid_run} killed after the first event, \
         {decided} recovery decisions, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (kind, cases) in &failures {
        println!("  {kind}: {} (first: seed {} — {})", cases.len(), cases[0].0, cases[0].1);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
