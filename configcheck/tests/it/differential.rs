//! rust-ini is a widely used ini parser; where its dialect and rDSN's agree (lines without an
//! inline comment, keys given once), both must read the same sections, keys and values.

use ini::{Ini, ParseOption};

use crate::util::{fixtures, load};

#[test]
fn agrees_with_rust_ini_on_the_reference_files() {
    let options = || ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    let mut compared = 0;
    for entry in std::fs::read_dir(fixtures().join("reference")).expect("reference dir") {
        let path = entry.expect("entry").path();
        let name = format!(
            "reference/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        let ours = load(&name);
        let theirs =
            Ini::load_from_str_opt(ours.source().text(), options()).expect("rust-ini parses");
        let their_sections: Vec<&str> = theirs.sections().flatten().collect();
        for section in ours.sections() {
            assert!(
                their_sections.contains(&section.name.value.as_str()),
                "{name}: [{}]",
                section.name.value
            );
            for entry in section.entries() {
                let line = &ours.document().lines[entry.line - 1];
                if line.comment.is_some() {
                    continue; // rust-ini reads inline comments as part of the value
                }
                let theirs = theirs
                    .section(Some(section.name.value.as_str()))
                    .expect("section");
                if theirs.get_all(entry.key.value.as_str()).count() != 1 {
                    continue;
                }
                assert_eq!(
                    theirs.get(entry.key.value.as_str()),
                    Some(entry.value.value.as_str()),
                    "{name}:{} [{}] {}",
                    entry.line,
                    section.name.value,
                    entry.key.value
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 500, "only {compared} entries compared");
}
