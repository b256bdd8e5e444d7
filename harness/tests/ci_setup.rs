//! Course authors only: reads .ci/run, which a student handout does not have.

/// CI installs what the labs need: every package of the catalog is on .ci/run's install line.
#[test]
fn ci_installs_every_package_the_catalog_needs() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/run");
    let text = std::fs::read_to_string(&script).expect("read .ci/run");
    let installed: Vec<&str> =
        text.lines().filter(|l| !l.trim_start().starts_with('#')).flat_map(str::split_whitespace).collect();
    let packages = cilab::catalog::packages();
    assert!(!packages.is_empty(), "the catalog needs no package: nothing to check");
    for package in packages {
        assert!(installed.contains(&package), ".ci/run does not install {package}, which a lab needs:\n{text}");
    }
}
