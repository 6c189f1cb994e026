use configcheck::{CheckOptions, Config};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes: loading returns a config or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(config) = Config::from_bytes(bytes, "fuzz.ini") {
            let _ = configcheck::check(&config, &CheckOptions::default());
        }
    }

    /// Ini-shaped text: the rules never panic, and the lines reproduce the text (lossless).
    #[test]
    fn ini_shaped_text_is_lossless_and_never_panics(
        text in "(\\[[a-z.@%{}]{0,8}\\]?|[a-z_.%{}@]{0,8} ?=? ?[a-z0-9:/,.%{}@^#; ]{0,24}|[;#].{0,8}|)(\r?\n(\\[[a-z.]{0,8}\\]|[a-z_]{1,8} = [a-z0-9:/,.%{}@^#; ]{0,24}|))*"
    ) {
        let config = Config::from_text("fuzz.ini", text.as_str());
        let _ = configcheck::check(&config, &CheckOptions::default());
        let rebuilt: Vec<&str> = config.document().lines.iter().map(|l| config.source().slice(l.span)).collect();
        let expected: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let expected = if text.ends_with('\n') { &expected[..expected.len() - 1] } else { &expected[..] };
        prop_assert_eq!(rebuilt, expected);
    }
}
