//! Config files: any text gets either a config or an error that names the
//! file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsd::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/opsd-fuzz/opsd.toml");
    if let Err(e) = Config::parse(path, text) {
        let message = e.to_string();
        assert!(
            message.contains("opsd.toml"),
            "an error that does not name the file: {message}"
        );
    }
});
