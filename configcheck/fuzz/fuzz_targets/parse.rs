//! Any bytes: loading never panics, and a loaded file goes through every rule without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = configcheck::Config::from_bytes(data.to_vec(), "fuzz.ini") {
        let _ = configcheck::check(&config, &configcheck::CheckOptions::default());
    }
});
