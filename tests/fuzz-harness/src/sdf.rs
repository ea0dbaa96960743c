//! Fuzz target `sdf_parse`: parse and check arbitrary bytes as a `.system`
//! file, with and without board rules, and read them as an ELF image. Any
//! panic is a bug: system descriptions and images are untrusted input.

use bulkhead_sdf::{check, check_source, parse, CheckOptions, Config};

/// Run the parser and checker on `data` (as text when it is UTF-8).
pub fn sdf_parse(data: &[u8]) {
    // The same bytes as a program image: its headers are untrusted too.
    let _ = bulkhead_sdf::elf::parse_bytes(data);
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let plain = CheckOptions::default();
    let report = check_source(src, "fuzz.system", &plain);
    // Rendering touches every position and message.
    let _ = report.render();
    if let Ok(sys) = parse(src) {
        for board in bulkhead_boards::BOARDS {
            for config in ["debug", "smp-release"] {
                let opts = CheckOptions {
                    board: Some(board),
                    config: Config::parse(config).unwrap_or(plain.config),
                    search_paths: Vec::new(),
                    require_images: true,
                };
                for d in check(&sys, &opts) {
                    let _ = d.render("fuzz.system");
                }
            }
        }
    }
}
