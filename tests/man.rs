//! The man pages are lint clean (mandoc is installed by .ci/run).

#[test]
fn man_pages_lint_clean() {
    let pages = [
        "man/netevd.8",
        "man/netevd.yaml.5",
        "man/netevd-hooks.7",
        "man/netevctl.1",
    ];
    let o = std::process::Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(pages)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mandoc is needed for this test (apt-get install mandoc)");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && out.trim().is_empty(), "{out}");
}

#[test]
fn every_hook_variable_is_documented() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/netevd-hooks.7"))
        .unwrap();
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/core/event.rs")).unwrap();
    // every quoted upper-case name in the environment builder
    let body = &src[src.find("pub fn environment").unwrap()..src.find("#[cfg(test)]").unwrap()];
    let mut n_vars = 0;
    for (i, part) in body.split('"').enumerate() {
        if i % 2 == 1 && part.len() > 2 && part.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            assert!(
                page.contains(&format!(".It Ev {part}")),
                "{part} is not in netevd-hooks(7)"
            );
            n_vars += 1;
        }
    }
    assert!(
        n_vars >= 16,
        "found only {n_vars} variables in event.rs: the scan is broken"
    );
}
