//! `cargo bench --bench permission`: what the permission check costs per tool call. Prints, asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use keel::config::{Effect, PermissionRule};
use keel::permission::{self, Access, bash};

fn main() {
    let config: Vec<PermissionRule> = (0..50)
        .map(|i| PermissionRule { action: "bash".into(), pattern: format!("tool{i} *"), effect: Effect::Allow })
        .collect();
    let stored: Vec<(String, String)> = (0..50).map(|i| ("edit".to_owned(), format!("src/module{i}/*.rs"))).collect();
    let rules = permission::rules_for(&config, stored);
    let line = "git status --short && cargo test -p keel 2>&1 | tail -n 20; echo \"$(date)\"";
    let n = 200_000;

    let t = Instant::now();
    for _ in 0..n {
        black_box(bash::simple_commands(black_box(line)));
    }
    let split = t.elapsed().as_nanos() as f64 / n as f64;

    let commands = bash::simple_commands(line);
    let accesses = [Access { action: "bash", resources: commands.clone() }];
    let t = Instant::now();
    for _ in 0..n {
        black_box(permission::check(black_box(&rules), black_box(&accesses)));
    }
    let check = t.elapsed().as_nanos() as f64 / n as f64;

    let file = [Access { action: "edit", resources: vec!["src/module42/lib.rs".into()] }];
    let t = Instant::now();
    for _ in 0..n {
        black_box(permission::check(black_box(&rules), black_box(&file)));
    }
    let file_check = t.elapsed().as_nanos() as f64 / n as f64;

    println!("permission check cost ({} rules in force)", rules.len());
    println!("split a 5-command bash line:               {split:>8.0} ns");
    println!("check those 5 commands against the rules:  {check:>8.0} ns");
    println!("check one file edit against the rules:     {file_check:>8.0} ns");
}
