//! The PostgreSQL test harness itself (tests/common/postgres.rs): each fresh database exists and is a new one.
//! Without PostgreSQL it says it skipped, unless KEEL_REQUIRE_POSTGRES is set (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::postgres::{fresh_database, psql};

#[test]
fn fresh_databases_exist_and_differ() {
    let Some(first) = fresh_database() else {
        eprintln!("skipped: no PostgreSQL here (apt-get install postgresql)");
        return;
    };
    let second = fresh_database().expect("PostgreSQL was there a moment ago");
    let names = [&first, &second].map(|url| psql(url, "select current_database()"));
    assert_ne!(names[0], names[1], "{first} and {second} are the same database");
    for (url, name) in [&first, &second].into_iter().zip(&names) {
        assert!(url.ends_with(&format!("/{name}")), "{url} connected to {name}");
    }
}

/// Tests run on parallel threads: the first calls race to start the one cluster.
#[test]
fn parallel_callers_share_one_server() {
    let urls: Vec<Option<String>> = std::thread::scope(|s| {
        (0..4).map(|_| s.spawn(fresh_database)).collect::<Vec<_>>().into_iter().map(|t| t.join().unwrap()).collect()
    });
    let Some(urls) = urls.into_iter().collect::<Option<Vec<String>>>() else {
        eprintln!("skipped: no PostgreSQL here (apt-get install postgresql)");
        return;
    };
    let server = |url: &str| url.rsplit_once('/').unwrap().0.to_owned();
    assert!(urls.iter().all(|url| server(url) == server(&urls[0])), "{urls:?}");
    let mut names: Vec<String> = urls.iter().map(|url| psql(url, "select current_database()")).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), urls.len(), "{urls:?}");
}
