//! The store's conformance suite: every case runs against SQLite and against PostgreSQL (a fresh database on a
//! throwaway cluster; skipped with a note where this machine has none, required in CI). Several `Store` values opened
//! on one database stand for several engines: each has its own connections, and on SQLite its own file locks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use keel::session::inbox::{self, NewInput};
use keel::store::{NewEvent, Store, approvals, head_seq};
use keel_protocol::approval::{ApprovalRequestedData, ApprovalResolvedData, Resolved};
use keel_protocol::catalogue::EventBody;
use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use keel_protocol::input::{ContentPart, Delivery, Disposition, InputKind};

/// A database that several engines open.
struct Backend {
    name: &'static str,
    location: String,
    /// Keeps the SQLite file's directory.
    _dir: tempfile::TempDir,
}

impl Backend {
    fn open(&self) -> Store {
        Store::at(&self.location).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// Runs `case` once per backend, each on a fresh database.
fn check(case: impl Fn(&Backend)) {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("keel.db").to_str().unwrap().to_owned();
    case(&Backend { name: "sqlite", location, _dir: dir });
    match common::postgres::fresh_database() {
        Some(location) => case(&Backend { name: "postgres", location, _dir: tempfile::tempdir().unwrap() }),
        None => eprintln!("note: no PostgreSQL on this machine; the postgres half of this case was skipped"),
    }
}

fn created() -> NewEvent {
    NewEvent::new(EventBody::SessionCreated(SessionCreatedData {
        cwd: "/ws".into(),
        title: "new".into(),
        agent: "build".into(),
        model: String::new(),
        parent_id: None,
        forked_from: None,
    }))
    .unwrap()
}

fn renamed(title: impl Into<String>) -> NewEvent {
    let data = SessionUpdatedData { title: Some(title.into()), ..Default::default() };
    NewEvent::new(EventBody::SessionUpdated(data)).unwrap()
}

fn seqs(store: &Store, session: &str) -> Vec<u64> {
    store.events_after(session, 0, usize::MAX).unwrap().iter().map(|e| e.seq).collect()
}

#[test]
fn appends_are_projected_and_paged() {
    check(|b| {
        let store = b.open();
        store.append("s", vec![created()]).unwrap();
        let appended = store.append("s", (0..5).map(|i| renamed(format!("t{i}"))).collect()).unwrap();
        assert_eq!(appended.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4, 5, 6], "{}", b.name);
        let row = store.session("s").unwrap().unwrap();
        assert_eq!((row.head_seq, row.title.as_str()), (6, "t4"), "{}", b.name);

        let page = store.events_after("s", 2, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4], "{}", b.name);
        let body = page[0].body().unwrap();
        assert!(matches!(&body, EventBody::SessionUpdated(d) if d.title.as_deref() == Some("t1")), "{}", b.name);
        assert!(store.events_after("s", 6, 10).unwrap().is_empty());

        let exists = store.append("s", vec![created()]).unwrap_err();
        assert!(matches!(exists, keel::store::Error::SessionExists(_)), "{}: {exists}", b.name);
        let missing = store.append("nope", vec![renamed("x")]).unwrap_err();
        assert!(matches!(missing, keel::store::Error::SessionNotFound(_)), "{}: {missing}", b.name);
        // A failed append changes nothing.
        assert_eq!(store.head("s").unwrap(), Some(6), "{}", b.name);
        // Ids are data, quotes and all (PostgreSQL's wake carries the id in a literal).
        store.append("it's", vec![created(), renamed("quoted")]).unwrap();
        assert_eq!(store.head("it's").unwrap(), Some(2), "{}", b.name);
    });
}

#[test]
fn seqs_stay_gapless_under_concurrent_engines() {
    check(|b| {
        let first = b.open();
        first.append("shared", vec![created()]).unwrap();
        let engines: Vec<Arc<Store>> = (0..4).map(|_| Arc::new(b.open())).collect();
        let writers: Vec<_> = engines
            .iter()
            .enumerate()
            .flat_map(|(e, store)| {
                (0..2).map(move |t| {
                    let store = Arc::clone(store);
                    std::thread::spawn(move || {
                        let own = format!("own-{e}-{t}");
                        store.append(&own, vec![created()]).unwrap();
                        for i in 0..50 {
                            store.append("shared", vec![renamed(format!("{e}.{t}.{i}"))]).unwrap();
                            store.append(&own, vec![renamed(format!("{i}"))]).unwrap();
                        }
                    })
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(seqs(&first, "shared"), (1..=401).collect::<Vec<_>>(), "{}", b.name);
        assert_eq!(first.head("shared").unwrap(), Some(401), "{}", b.name);
        assert_eq!(seqs(&first, "own-3-1"), (1..=51).collect::<Vec<_>>(), "{}", b.name);
    });
}

#[test]
fn a_feed_opened_before_history_sees_other_engines_commits() {
    check(|b| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let reader = Arc::new(b.open());
            let writer = b.open();
            writer.append("s", vec![created()]).unwrap();
            let feed = reader.feed("s").unwrap();
            let mut heads = feed.watch();
            tokio::spawn(Arc::clone(&reader).watch_other_writers(Duration::from_millis(20)));
            for i in 0..20 {
                writer.append("s", vec![renamed(format!("{i}"))]).unwrap();
            }
            tokio::time::timeout(common::WAIT, heads.wait_for(|head| *head == 21))
                .await
                .unwrap_or_else(|_| panic!("{}: the reader's feed never reached the writer's head", b.name))
                .unwrap();
            assert_eq!(seqs(&reader, "s"), (1..=21).collect::<Vec<_>>(), "{}", b.name);
        });
    });
}

fn prompt(id: &str, text: &str) -> NewInput {
    NewInput {
        input_id: Some(id.into()),
        delivery: Delivery::Queue,
        input: vec![ContentPart::Text { text: text.into() }],
        agent: None,
        model: None,
        kind: InputKind::Prompt,
    }
}

#[test]
fn admission_is_idempotent_across_engines() {
    check(|b| {
        let store = b.open();
        store.append("s", vec![created()]).unwrap();
        let engines: Vec<Arc<Store>> = (0..4).map(|_| Arc::new(b.open())).collect();
        let receipts: Vec<_> = engines
            .iter()
            .map(|store| {
                let store = Arc::clone(store);
                std::thread::spawn(move || inbox::admit(&store, "s", prompt("inp_1", "hello")).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(receipts.windows(2).all(|w| w[0] == w[1]), "{}: {receipts:?}", b.name);
        assert_eq!(receipts[0].disposition, Disposition::Started, "{}", b.name);
        assert_eq!(store.head("s").unwrap(), Some(2), "{}: admitted more than once", b.name);
        let other = inbox::admit(&store, "s", prompt("inp_1", "something else"));
        assert!(other.is_err(), "{}: the same id with other content was admitted", b.name);
    });
}

#[test]
fn an_approval_is_answered_once() {
    check(|b| {
        let store = b.open();
        store.append("s", vec![created()]).unwrap();
        let asked = ApprovalRequestedData {
            approval_id: "apr_1".into(),
            call_id: "call_1".into(),
            tool: "bash".into(),
            action: "bash".into(),
            resources: vec!["rm -rf *".into()],
            title: "bash: rm -rf *".into(),
            options: vec!["once".into(), "always".into(), "reject".into()],
        };
        store.append("s", vec![NewEvent::new(EventBody::ApprovalRequested(asked)).unwrap()]).unwrap();
        let decisions = [Resolved::Once, Resolved::Reject, Resolved::Always, Resolved::Once];
        let answers: Vec<bool> = decisions
            .into_iter()
            .map(|decision| {
                let store = b.open();
                std::thread::spawn(move || answer(&store, "apr_1", decision))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(answers.iter().filter(|won| **won).count(), 1, "{}: {answers:?}", b.name);
        let row = store.query(|db| approvals::get(db, "apr_1")).unwrap().unwrap();
        assert_eq!(row.state, approvals::ApprovalState::Resolved, "{}", b.name);
        let pending = store.query(|db| approvals::pending(db, "s")).unwrap();
        assert!(pending.is_empty(), "{}", b.name);
        if row.decision == Some(Resolved::Always) {
            // `always` stores the exact command as a project rule, its glob characters escaped.
            let rules = store.query(|db| approvals::project_rules(db, "/ws")).unwrap();
            assert_eq!(rules, [("bash".to_owned(), "rm -rf \\*".to_owned())], "{}", b.name);
        }
    });
}

/// What `approval/respond` does: resolve inside the append's transaction only while the approval is pending.
fn answer(store: &Store, approval_id: &str, decision: Resolved) -> bool {
    let data = ApprovalResolvedData { approval_id: approval_id.into(), decision, by: "test".into(), message: None };
    store
        .append_with("s", |db| match approvals::get(db, approval_id)? {
            Some(row) if row.state == approvals::ApprovalState::Pending => {
                Ok((vec![NewEvent::new(EventBody::ApprovalResolved(data))?], true))
            }
            _ => Ok((Vec::new(), false)),
        })
        .unwrap()
        .1
}

#[test]
fn leases_fence_a_stale_owner() {
    check(|b| {
        let (one, two) = (b.open(), b.open());
        one.append("s", vec![created()]).unwrap();
        let (a, z): (Arc<str>, Arc<str>) = (Arc::from("engine-a"), Arc::from("engine-z"));
        let fence_a = one.acquire_lease("s", &a, Duration::from_millis(300)).unwrap().expect("a free lease");
        assert!(two.acquire_lease("s", &z, Duration::from_secs(30)).unwrap().is_none(), "{}", b.name);
        assert_eq!(two.lease_holder("s").unwrap(), Some(("engine-a".to_owned(), fence_a.token)), "{}", b.name);
        one.append_fenced(&fence_a, vec![renamed("by a")]).unwrap();

        // A's lease runs out (a pause, a partition): Z takes over with a newer token, and A's writes are refused.
        std::thread::sleep(Duration::from_millis(400));
        let fence_z = two.acquire_lease("s", &z, Duration::from_secs(30)).unwrap().expect("an expired lease");
        assert!(fence_z.token > fence_a.token, "{}", b.name);
        let lost = one.append_fenced(&fence_a, vec![renamed("late a")]).unwrap_err();
        assert!(matches!(lost, keel::store::Error::LeaseLost(_)), "{}: {lost}", b.name);
        assert!(!one.renew_lease(&fence_a, Duration::from_secs(30)).unwrap(), "{}", b.name);
        two.append_fenced(&fence_z, vec![renamed("by z")]).unwrap();
        assert_eq!(one.session("s").unwrap().unwrap().title, "by z", "{}", b.name);

        assert!(two.release_lease(&fence_z, |_| Ok(false)).unwrap(), "{}", b.name);
        assert_eq!(one.lease_holder("s").unwrap(), None, "{}", b.name);
        assert_eq!(one.query(|db| head_seq(db, "s")).unwrap(), Some(3), "{}", b.name);
    });
}

#[test]
fn a_fork_copies_history_under_its_own_id() {
    check(|b| {
        let store = b.open();
        store.append("s", vec![created()]).unwrap();
        store.append("s", (0..4).map(|i| renamed(format!("t{i}"))).collect()).unwrap();
        let fork = store.fork("s", Some(3), "f", created()).unwrap();
        assert_eq!(fork.head_seq, 3, "{}", b.name);
        assert_eq!(fork.title, "t1", "{}", b.name);
        assert_eq!(seqs(&store, "f"), [1, 2, 3], "{}", b.name);
        let past = store.fork("s", Some(9), "g", created()).unwrap_err();
        assert!(matches!(past, keel::store::Error::SeqOutOfRange { .. }), "{}: {past}", b.name);
    });
}

#[test]
fn a_failing_write_among_concurrent_ones_rolls_back_only_itself() {
    check(|b| {
        let store = Arc::new(b.open());
        let writers: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let own = format!("s{t}");
                    store.append(&own, vec![created()]).unwrap();
                    for i in 0..100 {
                        store.append(&own, vec![renamed(format!("{i}"))]).unwrap();
                        // Joins the same batches as the others' writes, and fails alone.
                        assert!(store.append(&own, vec![created(), renamed("never")]).is_err());
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        for t in 0..8 {
            assert_eq!(seqs(&store, &format!("s{t}")), (1..=101).collect::<Vec<_>>(), "{}", b.name);
            assert_eq!(store.session(&format!("s{t}")).unwrap().unwrap().title, "99", "{}", b.name);
        }
    });
}
