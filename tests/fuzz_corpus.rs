//! Every entry of every fuzz corpus (`fuzz/corpus/<target>/`) through its target: what fuzzing found once stays
//! fixed, and CI checks it without fuzzing. `fuzz/run` does the fuzzing itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn every_corpus_entry_runs_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (name, target) in keel::fuzzing::TARGETS {
        let dir = root.join(name);
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).collect();
        assert!(!entries.is_empty(), "the {name} corpus is empty");
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= keel::fuzzing::TARGETS.len());
}
