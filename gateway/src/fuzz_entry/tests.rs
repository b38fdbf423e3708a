//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) through its entry
//! function on stable Rust, so the targets' code runs in the normal test command.

use std::path::PathBuf;

use super::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn fuzz_corpora_replay_through_their_entry_functions() {
    for (target, entry) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {target} at {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus of {target} is empty");
        for file in &files {
            let data = std::fs::read(file).expect("corpus file");
            let result = std::panic::catch_unwind(|| entry(&data));
            assert!(result.is_ok(), "{target}: {} fails", file.display());
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (target, _) in TARGETS {
        assert!(
            dir.join(format!("{target}.rs")).is_file(),
            "fuzz/fuzz_targets/{target}.rs missing"
        );
    }
}

/// Writes the seed corpora ([`super::seeds`]). Run by hand when an input shape changes
/// (`cargo test -p kafka-gateway --lib write_seed_corpora -- --ignored`); the fuzzers grow the
/// corpora from these and `cargo fuzz cmin` keeps them small.
#[test]
#[ignore = "writes into fuzz/corpus"]
fn write_seed_corpora() {
    use super::seeds;

    let write = |target: &str, name: String, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
    };
    for (i, seed) in seeds::requests().iter().enumerate() {
        write("request", format!("{i:03}"), seed);
    }
    let batches = seeds::batches();
    for (i, b) in batches.iter().enumerate() {
        for flags in [0u8, 1] {
            let d = [&[flags][..], b].concat();
            write("record_batch", format!("{i:02}-{flags}"), &d);
            write("smq_batch_codec", format!("{i:02}-{flags}"), &d);
        }
    }
    write(
        "record_batch",
        "set".into(),
        &[vec![0u8], batches.concat()].concat(),
    );
    for (i, m) in seeds::smq_messages().iter().enumerate() {
        write("smq_envelope", format!("{i:02}"), m);
    }
    for (i, g) in seeds::group_logs().iter().enumerate() {
        write("group_log", format!("{i:02}"), g);
    }
    for (i, r) in seeds::raft_logs().iter().enumerate() {
        write("raft_log", format!("{i:02}"), r);
    }
}
