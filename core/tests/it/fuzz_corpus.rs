//! Replays the fuzzers' saved inputs (`fuzz/corpus/<target>/`), so that what a
//! fuzzing run found once (every input that reached new code, and every crash,
//! once fixed and saved) stays covered by the normal test suite. `fuzz/run.sh`
//! runs the fuzzers themselves.

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_saved_fuzz_input_is_handled() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in harness::TARGETS {
        let dir = corpus.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "the corpus of {target} is empty");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
            assert!(outcome.is_ok(), "{target}: {} fails", input.display());
        }
    }
}
