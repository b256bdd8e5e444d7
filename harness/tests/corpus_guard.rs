//! Course authors only: reads the mistake corpus, which a student handout does not have.
//! The chroot-escape lab's guard in the corpus: on a machine whose evidence says it is not
//! disposable, `cilab dev corpus` runs none of the lab's entries and says so for each.

mod common;

#[test]
fn the_corpus_skips_chroot_escape_where_the_machine_is_not_disposable() {
    common::require_root();
    let bare = common::bare_metal::BareMetal::new();
    let env = labkit::disposable::FAKE_ROOT_ENV;
    // The mistake corpus skips the lab's entries, each said so, none counted as caught.
    let name = cilab::mistakes::chroot_escape::MISTAKES[0].name;
    let lab = cilab::catalog::find("chroot-escape").expect("in the catalog");
    let expected = cilab::corpus::entries(lab).expect("entries").iter().filter(|e| e.name.contains(name)).count();
    let corpus = common::cilab()
        .args(["dev", "corpus", "chroot-escape", "--only", name, "--format", "json"])
        .env(env, bare.path())
        .output()
        .expect("run cilab dev corpus");
    let results: Vec<cilab::corpus::EntryResult> = serde_json::from_slice(&corpus.stdout).expect("the corpus's JSON");
    assert_eq!(results.len(), expected, "every entry asked for is listed");
    for result in &results {
        let why = result.skipped.as_deref().unwrap_or_default();
        assert!(why.contains("does not look disposable") && !result.ok() && !result.caught, "{result:?}");
    }
    assert_eq!(corpus.status.code(), Some(1), "a skipped entry is not a caught one");
    assert!(String::from_utf8_lossy(&corpus.stderr).contains("SKIPPED"), "{corpus:?}");
}
